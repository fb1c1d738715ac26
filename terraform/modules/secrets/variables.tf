variable "name_prefix" {
  description = "Secrets live under `<name_prefix>/connections/` and `<name_prefix>/variables/`."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the secrets."
  type        = string
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret can be restored."
  type        = number
  default     = 30
}

variable "aws_region" {
  description = "Region written into the aws_default connection."
  type        = string
}

variable "secret_connection_ids" {
  description = "Connections whose values are secret: created empty here, filled by people (resources.SECRET_CONNECTION_IDS)."
  type        = list(string)
  default     = ["totesys_db", "warehouse_db", "snowflake_default", "snowflake_admin"]
}

variable "plain_variables" {
  description = "Airflow Variables whose values are not secret, set from Terraform (key -> value)."
  type        = map(string)
  default     = {}
}

variable "optional_variables" {
  description = "Airflow Variables the DAGs read that people may set (each has a default in the code)."
  type        = list(string)
  default     = ["nightly_file_ingestion_config", "totesys_tables_config"]
}
