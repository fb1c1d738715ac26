variable "environment" {
  description = "Environment name (dev, prod, ...): part of every resource name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.environment))
    error_message = "environment must be 2-15 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "name_prefix" {
  description = <<-EOT
    Prefix of every resource name (`<prefix>-<kind>`, e.g. `conveyor-prod-raw`). Default:
    `conveyor-<environment>`. Bucket names are global, so an organisation may need its own
    (e.g. `acme-conveyor-prod`). The DAGs read it from the Airflow Variable
    `conveyor_resource_prefix`, which this configuration sets.
  EOT
  type        = string
  default     = null

  validation {
    condition     = var.name_prefix == null || can(regex("^[a-z][a-z0-9-]{2,40}$", var.name_prefix))
    error_message = "name_prefix must be 3-41 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "aws_region" {
  description = "AWS region for everything."
  type        = string
  default     = "eu-west-2"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "notification_emails" {
  description = "E-mail addresses subscribed to the notifications topic (run summaries and alarms). Each must confirm."
  type        = list(string)
  default     = []
}

variable "expire_after_days" {
  description = "Days after which objects in a transient or reproducible bucket expire, by bucket kind. Kinds not named keep their objects (ingestion, processed, curated, source, archive, code: see terraform/README.md, Storage lifecycle)."
  type        = map(number)
  default = {
    inbound = 7
    stage   = 30
    raw     = 90
  }
}

variable "infrequent_access_after_days" {
  description = "Days after which objects move to S3 Standard-IA, by bucket kind (at least 30; less than the kind's expire_after_days). Kinds not named stay in Standard."
  type        = map(number)
  default = {
    raw       = 30
    curated   = 30
    ingestion = 30
    processed = 30
  }
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete non-empty buckets (for throwaway dev environments only)."
  type        = bool
  default     = false
}

# --- MWAA ---------------------------------------------------------------------------------

variable "airflow_version" {
  description = "MWAA Airflow version; the DAGs and requirements.txt are pinned to 3.3.1."
  type        = string
  default     = "3.3.1"
}

variable "mwaa_environment_class" {
  description = "mw1.micro, mw1.small, mw1.medium, mw1.large, mw1.xlarge or mw1.2xlarge."
  type        = string
  default     = "mw1.small"
}

variable "mwaa_min_workers" {
  description = "Minimum number of workers."
  type        = number
  default     = 1
}

variable "mwaa_max_workers" {
  description = "Maximum number of workers (MWAA scales between min and max)."
  type        = number
  default     = 5
}

variable "mwaa_worker_concurrency" {
  description = "Task slots per worker; null: MWAA's default for the class (small 5, medium 10, ...). See terraform/README.md#worker-sizing."
  type        = number
  default     = null
}

variable "mwaa_schedulers" {
  description = "Number of schedulers (2-5 on mw1.small and up)."
  type        = number
  default     = 2
}

variable "mwaa_webserver_access_mode" {
  description = "PRIVATE_ONLY (reach the UI through the VPC: VPN, bastion, Direct Connect) or PUBLIC_ONLY."
  type        = string
  default     = "PRIVATE_ONLY"
}

variable "mwaa_log_level" {
  description = "Log level for every MWAA log type (CRITICAL, ERROR, WARNING, INFO, DEBUG)."
  type        = string
  default     = "INFO"
}

variable "mwaa_weekly_maintenance_window_start" {
  description = "Weekly maintenance window start, DAY:HH:MM in UTC."
  type        = string
  default     = "SUN:03:00"
}

variable "conveyor_options" {
  description = <<-EOT
    The DAGs' own Airflow config options (section `conveyor`), e.g.
    { totesys_cron = "*/3 * * * *", totesys_lag_seconds = "60", inbound_to_stage_cron = "*/5 * * * *" }.
  EOT
  type        = map(string)
  default     = {}
}

variable "artefacts_dir" {
  description = "Folder holding `make package`'s output (dags/, plugins.zip, requirements.txt), relative to this folder."
  type        = string
  default     = "../dist"
}

variable "failed_tasks_alarm_threshold" {
  description = "Failed task instances in 5 minutes above which the failed-tasks alarm fires."
  type        = number
  default     = 0
}

# --- Networking: a new VPC, or existing private subnets ------------------------------------

variable "vpc_cidr" {
  description = "CIDR of the VPC created for MWAA when `existing_private_subnet_ids` is empty."
  type        = string
  default     = "10.20.0.0/16"
}

variable "single_nat_gateway" {
  description = "One NAT gateway for both private subnets (cheaper; dev) instead of one per subnet (prod)."
  type        = bool
  default     = false
}

variable "existing_private_subnet_ids" {
  description = "Two private subnets (different AZs, with a route to the internet or VPC endpoints) to use instead of creating a VPC."
  type        = list(string)
  default     = []
}

variable "database_cidr_blocks" {
  description = "Where the ToteSys and warehouse Postgres servers are (port 5432 egress). Default: the VPC."
  type        = list(string)
  default     = []
}

# --- Snowflake -----------------------------------------------------------------------------

variable "snowflake_iam_user_arn" {
  description = "STORAGE_AWS_IAM_USER_ARN from `DESC INTEGRATION` in Snowflake; empty until the integration exists."
  type        = string
  default     = ""
}

variable "snowflake_external_id" {
  description = "STORAGE_AWS_EXTERNAL_ID from `DESC INTEGRATION` in Snowflake; empty until the integration exists."
  type        = string
  default     = ""
}

variable "snowflake_settings" {
  description = <<-EOT
    The Snowflake names the DAGs use (Variable conveyor_snowflake, with the role and topic ARNs
    this configuration creates added): database, storage_integration, loader_role,
    task_warehouse, task_schedule.
  EOT
  type = object({
    database            = optional(string, "CONVEYOR")
    storage_integration = optional(string, "CONVEYOR_S3")
    loader_role         = optional(string, "SYSADMIN")
    task_warehouse      = optional(string, "COMPUTE_WH")
    task_schedule       = optional(string, "5 MINUTE")
  })
  default = {}
}

# --- Secrets -------------------------------------------------------------------------------

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored (0 deletes at once; dev only)."
  type        = number
  default     = 30
}
