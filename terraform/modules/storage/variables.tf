variable "name_prefix" {
  description = "Every bucket is named `<name_prefix>-<kind>`."
  type        = string
}

variable "bucket_kinds" {
  description = "The bucket kinds to create (plugins/conveyor/resources.py BUCKETS)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key for default encryption of every data bucket."
  type        = string
}

variable "expire_after_days" {
  description = "Days after which current objects expire, by bucket kind (transient data only)."
  type        = map(number)
  default     = {}
}

variable "infrequent_access_after_days" {
  description = "Days after which current objects move to S3 Standard-IA, by bucket kind (kept data read rarely after its first weeks). Kinds not named stay in Standard."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for days in values(var.infrequent_access_after_days) : days >= 30])
    error_message = "S3 moves objects to STANDARD_IA no earlier than 30 days after creation."
  }
}

variable "abort_incomplete_upload_days" {
  description = "Days after which an unfinished multipart upload (a killed extract or export) is aborted and its parts deleted."
  type        = number
  default     = 7
}

variable "noncurrent_version_expire_days" {
  description = "Days a replaced or deleted object version is kept (undo window)."
  type        = number
  default     = 30
}

variable "archive_transition_days" {
  description = "Days after which archive objects move to Glacier Instant Retrieval."
  type        = number
  default     = 30
}

variable "access_log_expire_days" {
  description = "Days S3 server access logs are kept."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete non-empty buckets."
  type        = bool
  default     = false
}
