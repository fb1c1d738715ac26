output "connections_prefix" {
  description = "The secrets backend's connections_prefix."
  value       = local.connections_prefix
}

output "variables_prefix" {
  description = "The secrets backend's variables_prefix."
  value       = local.variables_prefix
}

output "lookup_patterns" {
  description = "Regexes of the connection ids and Variable keys that live in Secrets Manager; others are not looked up there (fewer API calls)."
  value = {
    connections = "^(${join("|", sort(concat(var.secret_connection_ids, ["aws_default"])))})$"
    variables   = "^(${join("|", sort(keys(aws_secretsmanager_secret.variable)))})$"
  }
}

output "secret_names" {
  description = "Every secret this module created."
  value = concat(
    [for s in aws_secretsmanager_secret.connection : s.name],
    [aws_secretsmanager_secret.aws_default.name],
    [for s in aws_secretsmanager_secret.variable : s.name],
  )
}

output "secret_connection_names" {
  description = "Secrets people must fill before the DAGs that use them can run."
  value       = [for s in aws_secretsmanager_secret.connection : s.name]
}
