output "name_prefix" {
  description = "The prefix of every name; the DAGs read it from the Variable conveyor_resource_prefix."
  value       = local.name_prefix
}

output "buckets" {
  description = "Bucket names by kind."
  value       = { for kind, b in module.storage.buckets : kind => b.id }
}

output "topic_arns" {
  description = "Topic ARNs by kind (subscribe Snowpipe to curated-events and stage-events)."
  value       = module.events.topic_arns
}

output "queue_urls" {
  description = "The raw-events queue and its dead-letter queue."
  value       = module.events.queue_urls
}

output "secrets_to_fill" {
  description = "Secrets Manager secrets whose values people must put (terraform/README.md, Secrets)."
  value       = module.secrets.secret_connection_names
}

output "mwaa_webserver_url" {
  description = "The Airflow UI."
  value       = module.mwaa.webserver_url
}

output "dashboard_url" {
  description = "The operator's CloudWatch dashboard (docs/runbook.md opens with what it shows)."
  value       = module.monitoring.dashboard_url
}

output "mwaa_execution_role_arn" {
  description = "The role the DAGs run as."
  value       = module.mwaa.execution_role_arn
}

output "mwaa_security_group_id" {
  description = "Allow this security group on the ToteSys and warehouse Postgres servers (port 5432)."
  value       = module.mwaa.security_group_id
}

output "snowflake_storage_integration_role_arn" {
  description = "STORAGE_AWS_ROLE_ARN for Snowflake's CREATE STORAGE INTEGRATION."
  value       = module.snowflake_integration.role_arn
}

output "kms_key_arn" {
  description = "The environment's key."
  value       = aws_kms_key.conveyor.arn
}
