output "role_arn" {
  description = "STORAGE_AWS_ROLE_ARN for CREATE STORAGE INTEGRATION."
  value       = aws_iam_role.this.arn
}

output "integrated" {
  description = "Whether the trust policy names Snowflake's IAM user yet (step 2 done)."
  value       = local.integrated
}
