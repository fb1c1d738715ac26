variable "name_prefix" {
  description = "Every topic and queue is named `<name_prefix>-<kind>`."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the topics and queues."
  type        = string
}

variable "topic_kinds" {
  description = "Topics to create, `<name_prefix>-<kind>`; must include notifications and every bucket_notifications topic."
  type        = list(string)

  validation {
    condition     = contains(var.topic_kinds, "notifications")
    error_message = "topic_kinds must include notifications."
  }
}

variable "buckets" {
  description = "By kind: id and ARN of each bucket (module storage's `buckets`)."
  type        = map(object({ id = string, arn = string }))
}

variable "bucket_notifications" {
  description = "Bucket kind -> topic kind and key prefixes (\"\" = every key) of its ObjectCreated events."
  type        = map(object({ topic = string, prefixes = list(string) }))
}

variable "notification_emails" {
  description = "E-mail addresses subscribed to the notifications topic."
  type        = list(string)
  default     = []
}

variable "snowpipe_subscriber_arns" {
  description = "IAM principals (Snowflake's storage-integration user) allowed to subscribe Snowpipe queues to the curated and stage topics."
  type        = list(string)
  default     = []
}

variable "visibility_timeout_seconds" {
  description = "Raw-events queue visibility timeout: longer than s3_event_copy's copy_events may run (resources.QUEUE_VISIBILITY_TIMEOUT_S)."
  type        = number
  default     = 900
}

variable "max_receive_count" {
  description = "Receives before a message moves to the dead-letter queue (resources.MAX_RECEIVE_COUNT)."
  type        = number
  default     = 5
}

variable "message_retention_seconds" {
  description = "How long the raw-events queue keeps a message (4 days)."
  type        = number
  default     = 345600
}

variable "dead_letter_retention_seconds" {
  description = "How long the dead-letter queue keeps a message (14 days, the SQS maximum)."
  type        = number
  default     = 1209600
}
