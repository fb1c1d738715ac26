# terraform init -backend-config=environments/prod.s3.tfbackend
# terraform apply -var-file=environments/prod.tfvars
environment = "prod"
aws_region  = "eu-west-2"

notification_emails = ["data-engineering-alerts@example.com"]

mwaa_environment_class = "mw1.medium"
mwaa_min_workers       = 2
mwaa_max_workers       = 10
mwaa_schedulers        = 2

# The ToteSys and warehouse databases live in the shared data VPC, reached through peering.
database_cidr_blocks = ["10.40.0.0/16"]

conveyor_options = {
  totesys_cron                      = "*/3 * * * *"
  totesys_lag_seconds               = "60"
  totesys_statement_timeout_seconds = "900"
  inbound_to_stage_cron             = "*/5 * * * *"
}

# Step 2 of the Snowflake integration (modules/snowflake_integration): values from
# `DESC INTEGRATION conveyor_prod` in Snowflake.
# snowflake_iam_user_arn = "arn:aws:iam::123456789012:user/abc1-b-self1234"
# snowflake_external_id  = "ABC12345_SFCRole=1_abcdefg="

tags = {
  cost-centre = "data-engineering"
}
