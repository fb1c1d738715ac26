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
