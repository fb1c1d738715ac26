output "environment_arn" {
  description = "ARN of the MWAA environment."
  value       = aws_mwaa_environment.this.arn
}

output "webserver_url" {
  description = "The Airflow UI (reachable from inside the VPC when PRIVATE_ONLY)."
  value       = "https://${aws_mwaa_environment.this.webserver_url}"
}

output "execution_role_arn" {
  description = "The role the DAGs run as."
  value       = aws_iam_role.execution.arn
}

output "plugins_s3_object_version" {
  description = "The plugins.zip version the environment runs."
  value       = aws_s3_object.artefact["plugins.zip"].version_id
}

output "requirements_s3_object_version" {
  description = "The requirements.txt version the environment runs."
  value       = aws_s3_object.artefact["requirements.txt"].version_id
}

output "private_subnet_ids" {
  description = "The environment's subnets."
  value       = local.private_subnet_ids
}

output "security_group_id" {
  description = "The environment's security group (allow it on the Postgres servers' security groups)."
  value       = aws_security_group.mwaa.id
}

output "failed_tasks_alarm_arn" {
  description = "The alarm on failed task instances."
  value       = aws_cloudwatch_metric_alarm.failed_tasks.arn
}

output "environment_name" {
  description = "The environment's name: the Environment dimension of its CloudWatch metrics."
  value       = aws_mwaa_environment.this.name
}
