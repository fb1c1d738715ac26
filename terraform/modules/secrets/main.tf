# Airflow connections and Variables for MWAA's Secrets Manager backend, one secret each:
#   <name_prefix>/connections/<conn_id>     e.g. conveyor-prod/connections/totesys_db
#   <name_prefix>/variables/<key>           e.g. conveyor-prod/variables/conveyor_resource_prefix
# Credentials are never in this repository or in Terraform state: their secrets are created
# empty and people put the values (terraform/README.md, "Secrets"). Only values that are not
# secret (the region for aws_default, resource names) are written here.

locals {
  connections_prefix = "${var.name_prefix}/connections"
  variables_prefix   = "${var.name_prefix}/variables"
}

resource "aws_secretsmanager_secret" "connection" {
  #checkov:skip=CKV2_AWS_57:These are credentials of databases and a Snowflake account that other teams own and rotate at the source; a rotation Lambda here would fight theirs. terraform/README.md says how to update a value.
  for_each = toset(var.secret_connection_ids)

  name                    = "${local.connections_prefix}/${each.key}"
  description             = "Airflow connection ${each.key} (JSON: conn_type, host, port, login, password, schema, extra). Value set by people, not Terraform."
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
}

# aws_default carries no credentials (MWAA's execution role is used), only the region.
resource "aws_secretsmanager_secret" "aws_default" {
  #checkov:skip=CKV2_AWS_57:Holds no credential (only the region); nothing to rotate.
  name                    = "${local.connections_prefix}/aws_default"
  description             = "Airflow connection aws_default: no keys, the execution role's credentials are used."
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
}

resource "aws_secretsmanager_secret_version" "aws_default" {
  secret_id = aws_secretsmanager_secret.aws_default.id
  secret_string = jsonencode({
    conn_type = "aws"
    extra     = { region_name = var.aws_region }
  })
}

resource "aws_secretsmanager_secret" "variable" {
  #checkov:skip=CKV2_AWS_57:Airflow Variables holding resource names and s3:// config locations, not credentials; nothing to rotate.
  for_each = toset(concat(keys(var.plain_variables), var.optional_variables))

  name                    = "${local.variables_prefix}/${each.key}"
  description             = "Airflow Variable ${each.key}."
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
}

resource "aws_secretsmanager_secret_version" "variable" {
  for_each = var.plain_variables

  secret_id     = aws_secretsmanager_secret.variable[each.key].id
  secret_string = each.value
}
