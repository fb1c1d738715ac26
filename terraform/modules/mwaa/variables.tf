variable "name" {
  description = "Environment name (also the prefix of its log groups, role and security group)."
  type        = string
}

variable "airflow_version" {
  description = "Airflow version of the MWAA environment."
  type        = string
  default     = "3.3.1"
}

variable "environment_class" {
  description = "MWAA environment class."
  type        = string
  default     = "mw1.small"

  validation {
    condition     = contains(["mw1.micro", "mw1.small", "mw1.medium", "mw1.large", "mw1.xlarge", "mw1.2xlarge"], var.environment_class)
    error_message = "environment_class must be one of mw1.micro, mw1.small, mw1.medium, mw1.large, mw1.xlarge, mw1.2xlarge."
  }
}

variable "min_workers" {
  description = "Minimum number of workers."
  type        = number
  default     = 1
}

variable "max_workers" {
  description = "Maximum number of workers."
  type        = number
  default     = 5

  validation {
    condition     = var.max_workers >= var.min_workers && var.max_workers <= 25
    error_message = "max_workers must be at least min_workers and at most 25."
  }

  validation {
    condition     = var.environment_class != "mw1.micro" || var.max_workers == 1
    error_message = "mw1.micro supports exactly one worker."
  }
}

variable "worker_concurrency" {
  description = "Task slots per worker (celery.worker_autoscale, fixed); null: MWAA's default for the class (micro 3, small 5, medium 10, large 20, xlarge 40, 2xlarge 80). core.parallelism is max_workers times this."
  type        = number
  default     = null

  validation {
    condition     = var.worker_concurrency == null || try(var.worker_concurrency >= 1, false)
    error_message = "worker_concurrency must be at least 1 (or null for the class default)."
  }
}

variable "schedulers" {
  description = "Number of schedulers."
  type        = number
  default     = 2

  validation {
    condition     = var.schedulers >= 1 && var.schedulers <= 5
    error_message = "schedulers must be between 1 and 5."
  }

  # mw1.micro runs one scheduler and one worker; MWAA rejects anything else.
  validation {
    condition     = var.environment_class != "mw1.micro" || var.schedulers == 1
    error_message = "mw1.micro supports exactly one scheduler."
  }
}

variable "webserver_access_mode" {
  description = "PRIVATE_ONLY or PUBLIC_ONLY."
  type        = string
  default     = "PRIVATE_ONLY"

  validation {
    condition     = contains(["PRIVATE_ONLY", "PUBLIC_ONLY"], var.webserver_access_mode)
    error_message = "webserver_access_mode must be PRIVATE_ONLY or PUBLIC_ONLY."
  }
}

variable "log_level" {
  description = "Log level of every log type."
  type        = string
  default     = "INFO"
}

variable "weekly_maintenance_window_start" {
  description = "DAY:HH:MM, UTC."
  type        = string
  default     = "SUN:03:00"
}

variable "conveyor_options" {
  description = "Airflow config options of section `conveyor` (key without the section -> value)."
  type        = map(string)
  default     = {}
}

variable "artefacts_dir" {
  description = "Absolute path of `make package`'s output: dags/, plugins.zip, requirements.txt."
  type        = string
}

variable "kms_key_arn" {
  description = "The environment's KMS key (buckets, topics, queues, secrets)."
  type        = string
}

variable "source_bucket" {
  description = "The MWAA source (code) bucket: id and ARN."
  type        = object({ id = string, arn = string })
}

variable "bucket_access" {
  description = "Data buckets the DAGs use: kind -> ARN and access level (read, write, write-delete)."
  type        = map(object({ arn = string, level = string }))

  validation {
    condition     = alltrue([for b in values(var.bucket_access) : contains(["read", "write", "write-delete"], b.level)])
    error_message = "each bucket's level must be read, write or write-delete."
  }
}

variable "queue_arns" {
  description = "Queues the DAGs receive from and delete messages on."
  type        = list(string)
}

variable "publish_topic_arns" {
  description = "Topics the DAGs publish to."
  type        = list(string)
}

variable "alarm_topic_arn" {
  description = "Topic the failed-tasks alarm notifies."
  type        = string
}

variable "failed_tasks_alarm_threshold" {
  description = "Failed task instances in 5 minutes above which the alarm fires."
  type        = number
  default     = 0
}

variable "secrets_connections_prefix" {
  description = "Secrets Manager prefix of Airflow connections."
  type        = string
}

variable "secrets_variables_prefix" {
  description = "Secrets Manager prefix of Airflow Variables."
  type        = string
}

variable "secrets_lookup_patterns" {
  description = "Regexes of the connection ids and Variable keys looked up in Secrets Manager."
  type        = object({ connections = string, variables = string })
}

variable "vpc_cidr" {
  description = "CIDR of the VPC created when no subnets are given."
  type        = string
  default     = "10.20.0.0/16"
}

variable "availability_zones" {
  description = "Two zone names for the created subnets; default <region>a and <region>b."
  type        = list(string)
  default     = []
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per private subnet."
  type        = bool
  default     = false
}

variable "existing_private_subnet_ids" {
  description = "Two existing private subnets in different AZs; empty = create a VPC."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.existing_private_subnet_ids) == 0 || length(var.existing_private_subnet_ids) == 2
    error_message = "MWAA needs exactly two private subnets (in two availability zones)."
  }
}

variable "database_cidr_blocks" {
  description = "CIDRs of the Postgres servers the DAGs reach on 5432; empty = the VPC's CIDR."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Retention of the VPC flow log group."
  type        = number
  default     = 365
}
