# The execution role: what MWAA itself needs (AWS's documented minimum for an environment) and
# exactly what the DAGs do, on exactly their buckets, queue, topic, secrets and key.

resource "aws_iam_role" "execution" {
  name               = "${var.name}-mwaa-execution"
  description        = "MWAA ${var.name}: runs Conveyor's DAGs"
  assume_role_policy = data.aws_iam_policy_document.execution_trust.json
}

data "aws_iam_policy_document" "execution_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_policy" "execution" {
  name        = "${var.name}-mwaa-execution"
  description = "MWAA ${var.name}: the environment's own needs and the DAGs' data access"
  policy      = data.aws_iam_policy_document.execution.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = aws_iam_policy.execution.arn
}

locals {
  bucket_arns_by_level = {
    for level in ["read", "write", "write-delete"] :
    level => [for b in values(var.bucket_access) : b.arn if b.level == level]
  }
  # write-delete: inbound_to_stage copies and deletes exact object versions (*ObjectVersion).
  object_actions = {
    read         = ["s3:GetObject", "s3:GetObjectTagging"]
    write        = ["s3:GetObject", "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    write-delete = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:DeleteObject", "s3:DeleteObjectVersion"]
  }
}

data "aws_iam_policy_document" "execution" {
  #checkov:skip=CKV_AWS_356:Only the three statements AWS documents for every MWAA environment use "*": s3:GetAccountPublicAccessBlock, logs:DescribeLogGroups and cloudwatch:PutMetricData have no resource-level permissions (PutMetricData is limited to the AmazonMWAA namespace by a condition).
  #checkov:skip=CKV_AWS_111:The writes with "*" resources are cloudwatch:PutMetricData (no resource-level permissions; condition pins the AmazonMWAA namespace) and the Celery queue statement (MWAA's queues live in an AWS-owned account, hence the account wildcard); every data write names its bucket, queue or topic.

  # --- MWAA itself ---
  statement {
    sid       = "PublishEnvironmentMetrics"
    actions   = ["airflow:PublishMetrics"]
    resources = ["arn:${local.partition}:airflow:${local.region}:${local.account_id}:environment/${var.name}"]
  }

  statement {
    sid       = "ReadMwaaSourceBucket"
    actions   = ["s3:GetObject*", "s3:GetBucket*", "s3:List*"]
    resources = [var.source_bucket.arn, "${var.source_bucket.arn}/*"]
  }

  statement {
    sid       = "CheckAccountPublicAccessBlock"
    actions   = ["s3:GetAccountPublicAccessBlock"]
    resources = ["*"]
  }

  statement {
    sid = "WriteEnvironmentLogs"
    actions = [
      "logs:CreateLogStream", "logs:CreateLogGroup", "logs:PutLogEvents", "logs:GetLogEvents",
      "logs:GetLogRecord", "logs:GetLogGroupFields", "logs:GetQueryResults",
    ]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:airflow-${var.name}-*"]
  }

  statement {
    sid       = "DescribeLogGroups"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["*"]
  }

  statement {
    sid       = "PutEnvironmentMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["AmazonMWAA"]
    }
  }

  statement {
    sid = "UseCeleryQueues"
    actions = [
      "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:SendMessage",
    ]
    resources = ["arn:${local.partition}:sqs:${local.region}:*:airflow-celery-*"]
  }

  statement {
    sid           = "CeleryQueuesAwsOwnedKey"
    actions       = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey*", "kms:Encrypt"]
    not_resources = ["arn:${local.partition}:kms:*:${local.account_id}:key/*"]
    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com"]
    }
  }

  # --- What the DAGs do ---
  statement {
    sid       = "ListDataBuckets"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation", "s3:GetBucketVersioning"]
    resources = [for b in values(var.bucket_access) : b.arn]
  }

  dynamic "statement" {
    for_each = { for level, arns in local.bucket_arns_by_level : level => arns if length(arns) > 0 }
    content {
      sid       = "Objects${replace(title(replace(statement.key, "-", " ")), " ", "")}"
      actions   = local.object_actions[statement.key]
      resources = [for arn in statement.value : "${arn}/*"]
    }
  }

  # s3_event_copy copies (and first HEADs) the exact raw object version each event names.
  statement {
    sid       = "ReadEventObjectVersions"
    actions   = ["s3:GetObjectVersion", "s3:GetObjectVersionTagging"]
    resources = ["${var.bucket_access["raw"].arn}/events/*"]
  }

  statement {
    sid = "ConsumeEventQueues"
    actions = [
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
      "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
    ]
    resources = var.queue_arns
  }

  statement {
    sid       = "PublishRunSummaries"
    actions   = ["sns:Publish"]
    resources = var.publish_topic_arns
  }

  statement {
    sid     = "ReadAirflowSecrets"
    actions = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [
      "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${var.secrets_connections_prefix}/*",
      "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${var.secrets_variables_prefix}/*",
    ]
  }

  statement {
    sid       = "UseEnvironmentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }
}
