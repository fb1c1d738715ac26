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
  description = "How long the raw-events queue keeps a message (resources.QUEUE_RETENTION_S: 14 days, the SQS maximum), so a paused or failing s3_event_copy loses nothing while the oldest-message alarm is answered."
  type        = number
  default     = 1209600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "SQS keeps a message between 60 seconds and 14 days (1209600)."
  }
}

variable "dead_letter_retention_seconds" {
  description = "How long the dead-letter queue keeps a message (14 days, the SQS maximum), counted from when the message was first sent to the raw-events queue."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dead_letter_retention_seconds >= 60 && var.dead_letter_retention_seconds <= 1209600
    error_message = "SQS keeps a message between 60 seconds and 14 days (1209600)."
  }
}

variable "oldest_message_alarm_seconds" {
  description = "Age of the raw-events queue's oldest message above which the oldest-message alarm fires: s3_event_copy is paused, failing or behind. Well under the retention; a message that keeps failing reaches the DLQ in about maxReceiveCount x the visibility timeout (75 min)."
  type        = number
  default     = 10800

  validation {
    condition     = var.oldest_message_alarm_seconds >= 3600 && var.oldest_message_alarm_seconds <= 86400
    error_message = "Between 1 hour (longer than a message's retries before the DLQ) and 1 day (far under the 14-day retention)."
  }
}
