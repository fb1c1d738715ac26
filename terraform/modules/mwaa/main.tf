# The MWAA environment, the artefacts it runs (uploaded from `make package`'s dist/), and an
# alarm on failed tasks.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  dag_files = fileset("${var.artefacts_dir}/dags", "**")

  # Connections and Variables come from Secrets Manager (modules/secrets), one secret each.
  secrets_backend_kwargs = {
    connections_prefix         = var.secrets_connections_prefix
    variables_prefix           = var.secrets_variables_prefix
    connections_lookup_pattern = var.secrets_lookup_patterns.connections
    variables_lookup_pattern   = var.secrets_lookup_patterns.variables
  }

  base_configuration_options = {
    "secrets.backend" = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
    # Sensors hand their waiting to the triggerer instead of holding a worker slot.
    "operators.default_deferrable" = "True"
    "core.default_timezone"        = "utc"
  }

  # Worker sizing, as `CONVEYOR_EXECUTOR=celery make airflow` ran the scheduler tests: a fixed
  # number of task slots per worker (celery.worker_autoscale max,min equal: no pool processes
  # forked and reaped under load), MWAA's default for the class unless var.worker_concurrency
  # says otherwise, and core.parallelism = max_workers x that / schedulers (Airflow applies it per
  # scheduler), so the schedulers together queue no more tasks than the workers MWAA may add can
  # run. No pools: every task takes a default_pool slot.
  class_worker_concurrency = {
    "mw1.micro"   = 3
    "mw1.small"   = 5
    "mw1.medium"  = 10
    "mw1.large"   = 20
    "mw1.xlarge"  = 40
    "mw1.2xlarge" = 80
  }
  worker_concurrency = coalesce(var.worker_concurrency, local.class_worker_concurrency[var.environment_class])
  sizing_configuration_options = {
    "celery.worker_autoscale" = "${local.worker_concurrency},${local.worker_concurrency}"
    "core.parallelism"        = tostring(ceil(var.max_workers * local.worker_concurrency / var.schedulers))
  }

  airflow_configuration_options = merge(
    local.base_configuration_options,
    local.sizing_configuration_options,
    { "secrets.backend_kwargs" = jsonencode(local.secrets_backend_kwargs) },
    { for key, value in var.conveyor_options : "conveyor.${key}" => value },
  )
}

# plugins.zip and requirements.txt: MWAA runs the object version named below, so each upload
# (a changed checksum) is a new version and an environment update.
resource "aws_s3_object" "artefact" {
  for_each = toset(["plugins.zip", "requirements.txt"])

  bucket      = var.source_bucket.id
  key         = each.key
  source      = "${var.artefacts_dir}/${each.key}"
  source_hash = fileexists("${var.artefacts_dir}/${each.key}") ? filemd5("${var.artefacts_dir}/${each.key}") : null
  kms_key_id  = var.kms_key_arn

  lifecycle {
    precondition {
      condition     = fileexists("${var.artefacts_dir}/${each.key}")
      error_message = "${var.artefacts_dir}/${each.key} is missing: run `make package` first."
    }
  }
}

resource "aws_s3_object" "dags" {
  for_each = local.dag_files

  bucket      = var.source_bucket.id
  key         = "dags/${each.key}"
  source      = "${var.artefacts_dir}/dags/${each.key}"
  source_hash = filemd5("${var.artefacts_dir}/dags/${each.key}")
  kms_key_id  = var.kms_key_arn
}

resource "aws_mwaa_environment" "this" {
  name                            = var.name
  airflow_version                 = var.airflow_version
  environment_class               = var.environment_class
  min_workers                     = var.min_workers
  max_workers                     = var.max_workers
  schedulers                      = var.schedulers
  webserver_access_mode           = var.webserver_access_mode
  weekly_maintenance_window_start = var.weekly_maintenance_window_start
  execution_role_arn              = aws_iam_role.execution.arn

  source_bucket_arn              = var.source_bucket.arn
  dag_s3_path                    = "dags/"
  plugins_s3_path                = aws_s3_object.artefact["plugins.zip"].key
  plugins_s3_object_version      = aws_s3_object.artefact["plugins.zip"].version_id
  requirements_s3_path           = aws_s3_object.artefact["requirements.txt"].key
  requirements_s3_object_version = aws_s3_object.artefact["requirements.txt"].version_id

  airflow_configuration_options = local.airflow_configuration_options

  network_configuration {
    security_group_ids = [aws_security_group.mwaa.id]
    subnet_ids         = local.private_subnet_ids
  }

  logging_configuration {
    dag_processing_logs {
      enabled   = true
      log_level = var.log_level
    }
    scheduler_logs {
      enabled   = true
      log_level = var.log_level
    }
    task_logs {
      enabled   = true
      log_level = var.log_level
    }
    webserver_logs {
      enabled   = true
      log_level = var.log_level
    }
    worker_logs {
      enabled   = true
      log_level = var.log_level
    }
  }

  # The DAG files must be in the bucket before the environment first parses it.
  depends_on = [aws_s3_object.dags, aws_iam_role_policy_attachment.execution, aws_nat_gateway.this]
}

# Airflow's ti_failures counter, which MWAA publishes as TaskInstanceFailures.
resource "aws_cloudwatch_metric_alarm" "failed_tasks" {
  alarm_name          = "${var.name}-failed-tasks"
  alarm_description   = "Airflow task instances failed in MWAA environment ${var.name} (after their retries). See the task logs in the Airflow UI or the ${var.name}-Task log group."
  namespace           = "AmazonMWAA"
  metric_name         = "TaskInstanceFailures"
  # MWAA publishes ti_failures with DAG and Task "All" (the AWS docs' metric table), not Function.
  dimensions          = { Environment = var.name, DAG = "All", Task = "All" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.failed_tasks_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
}
