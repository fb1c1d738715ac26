variable "name_prefix" {
  description = "The role is named `<name_prefix>-snowflake-storage-integration`."
  type        = string
}

variable "readable_buckets" {
  description = "Buckets Snowflake loads from (kind -> ARN): curated (JSON events), stage (retail files), processed (ToteSys star)."
  type        = map(string)
}

variable "kms_key_arn" {
  description = "The key the buckets are encrypted with."
  type        = string
}

variable "snowflake_iam_user_arn" {
  description = "STORAGE_AWS_IAM_USER_ARN of the storage integration; empty before it exists."
  type        = string
  default     = ""
}

variable "snowflake_external_id" {
  description = "STORAGE_AWS_EXTERNAL_ID of the storage integration; empty before it exists."
  type        = string
  default     = ""
}
