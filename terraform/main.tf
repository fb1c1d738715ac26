# Conveyor's AWS side. Every name is `<name_prefix>-<kind>`, the same names
# plugins/conveyor/resources.py gives the DAGs (tests/unit/test_terraform.py cross-checks them).

locals {
  name_prefix = coalesce(var.name_prefix, "conveyor-${var.environment}")
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  region      = data.aws_region.current.region

  # What the DAGs do in each bucket, and so what the MWAA execution role may do there.
  #   read:         list and read (source files, MWAA's own code)
  #   write:        read + create/overwrite objects (copies, generated files, Parquet parts)
  #   write-delete: write + delete (inbound files once staged; stale ingestion files of a window)
  bucket_access = {
    source    = "read"
    raw       = "write"
    curated   = "write"
    inbound   = "write-delete"
    stage     = "write"
    archive   = "write"
    ingestion = "write-delete"
    processed = "write-delete"
    code      = "read"
  }

  # resources.TOPICS
  topic_kinds = ["notifications", "raw-events", "curated-events", "stage-events"]

  # resources.BUCKET_NOTIFICATIONS: bucket kind -> topic kind and key prefixes. Only events/ in
  # raw feeds s3_event_copy (not the nightly landing/ zone), and only events/ in curated reaches
  # Snowpipe (not the copier's _quarantine/).
  bucket_notifications = {
    raw     = { topic = "raw-events", prefixes = ["events/"] }
    curated = { topic = "curated-events", prefixes = ["events/"] }
    stage   = { topic = "stage-events", prefixes = ["user/", "transactions/"] }
  }
}

module "storage" {
  source = "./modules/storage"

  name_prefix       = local.name_prefix
  bucket_kinds      = keys(local.bucket_access)
  kms_key_arn       = aws_kms_key.conveyor.arn
  expire_after_days = var.expire_after_days
  force_destroy     = var.force_destroy_buckets

  infrequent_access_after_days = var.infrequent_access_after_days
}

module "events" {
  source = "./modules/events"

  name_prefix          = local.name_prefix
  kms_key_arn          = aws_kms_key.conveyor.arn
  topic_kinds          = local.topic_kinds
  buckets              = module.storage.buckets
  bucket_notifications = local.bucket_notifications
  notification_emails  = var.notification_emails
  # resources.QUEUE_VISIBILITY_TIMEOUT_S and MAX_RECEIVE_COUNT: longer than copy_events may run.
  visibility_timeout_seconds = 900
  max_receive_count          = 5
  # Snowflake's IAM user subscribes its Snowpipe queues to the curated and stage topics.
  snowpipe_subscriber_arns = compact([var.snowflake_iam_user_arn])
}

module "secrets" {
  source = "./modules/secrets"

  name_prefix             = local.name_prefix
  kms_key_arn             = aws_kms_key.conveyor.arn
  recovery_window_in_days = var.secret_recovery_window_days
  aws_region              = local.region
  # Variables whose values are not secret, set here so the DAGs find this environment's names.
  plain_variables = {
    conveyor_resource_prefix         = local.name_prefix
    conveyor_notifications_topic_arn = module.events.topic_arns["notifications"]
    # snowflake_setup and the Snowflake loads: names, the integration's role, Snowpipe's topics.
    conveyor_snowflake = jsonencode(merge(var.snowflake_settings, {
      storage_role_arn = module.snowflake_integration.role_arn
      topics = {
        curated = module.events.topic_arns["curated-events"]
        stage   = module.events.topic_arns["stage-events"]
      }
    }))
  }
}

module "mwaa" {
  source = "./modules/mwaa"

  name                            = local.name_prefix
  airflow_version                 = var.airflow_version
  environment_class               = var.mwaa_environment_class
  min_workers                     = var.mwaa_min_workers
  max_workers                     = var.mwaa_max_workers
  worker_concurrency              = var.mwaa_worker_concurrency
  schedulers                      = var.mwaa_schedulers
  webserver_access_mode           = var.mwaa_webserver_access_mode
  log_level                       = var.mwaa_log_level
  weekly_maintenance_window_start = var.mwaa_weekly_maintenance_window_start
  conveyor_options                = var.conveyor_options
  artefacts_dir                   = abspath("${path.root}/${var.artefacts_dir}")
  kms_key_arn                     = aws_kms_key.conveyor.arn

  source_bucket = module.storage.buckets["code"]
  bucket_access = {
    for kind, level in local.bucket_access : kind => {
      arn   = module.storage.buckets[kind].arn
      level = level
    } if kind != "code"
  }
  queue_arns                   = [module.events.queue_arns["raw-events"]]
  publish_topic_arns           = [module.events.topic_arns["notifications"]]
  alarm_topic_arn              = module.events.topic_arns["notifications"]
  secrets_connections_prefix   = module.secrets.connections_prefix
  secrets_variables_prefix     = module.secrets.variables_prefix
  secrets_lookup_patterns      = module.secrets.lookup_patterns
  failed_tasks_alarm_threshold = var.failed_tasks_alarm_threshold

  vpc_cidr                    = var.vpc_cidr
  single_nat_gateway          = var.single_nat_gateway
  existing_private_subnet_ids = var.existing_private_subnet_ids
  database_cidr_blocks        = var.database_cidr_blocks
}

module "monitoring" {
  source = "./modules/monitoring"

  name                         = local.name_prefix
  region                       = local.region
  environment_name             = module.mwaa.environment_name
  queue_name                   = module.events.queue_names["raw-events"]
  dead_letter_queue_name       = module.events.queue_names["raw-events-dlq"]
  oldest_message_alarm_seconds = module.events.oldest_message_alarm_seconds
  alarm_topic_arn              = module.events.topic_arns["notifications"]
  alarm_arns = merge(module.events.alarm_arns, {
    failed_tasks = module.mwaa.failed_tasks_alarm_arn
  })
}

module "snowflake_integration" {
  source = "./modules/snowflake_integration"

  name_prefix            = local.name_prefix
  readable_buckets       = { for kind in ["curated", "stage", "processed"] : kind => module.storage.buckets[kind].arn }
  kms_key_arn            = aws_kms_key.conveyor.arn
  snowflake_iam_user_arn = var.snowflake_iam_user_arn
  snowflake_external_id  = var.snowflake_external_id
}
