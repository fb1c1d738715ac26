# terraform init -backend-config=environments/dev.s3.tfbackend
# terraform apply -var-file=environments/dev.tfvars
environment = "dev"
aws_region  = "eu-west-2"

notification_emails = ["data-engineering-dev@example.com"]

# Small and cheap: one NAT gateway, one worker at rest, quick secret deletion.
mwaa_environment_class      = "mw1.small"
mwaa_min_workers            = 1
mwaa_max_workers            = 2
mwaa_schedulers             = 2
single_nat_gateway          = true
secret_recovery_window_days = 7
force_destroy_buckets       = true

conveyor_options = {
  totesys_cron        = "*/15 * * * *"
  totesys_lag_seconds = "60"
}

tags = {
  cost-centre = "data-engineering"
}
