# One customer-managed key per environment encrypts the buckets, topics, queues, secrets and log
# groups. Services that write to encrypted topics and queues on our behalf (S3 event
# notifications, SNS delivery to SQS, CloudWatch alarms, CloudWatch Logs) are allowed to use it,
# only on behalf of this account (aws:SourceAccount; Logs by its log-group encryption context):
# a service principal is shared by every AWS account, so without the condition another account's
# bucket, topic or alarm could have the service use this key (the confused deputy). IAM
# principals get the key through their own policies (root statement).
resource "aws_kms_key" "conveyor" {
  description             = "Conveyor ${local.name_prefix}: S3, SNS, SQS, Secrets Manager, CloudWatch Logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountIamPoliciesGrantUse"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid    = "ServicesPublishToEncryptedTopicsAndQueues"
        Effect = "Allow"
        Principal = {
          Service = ["s3.amazonaws.com", "sns.amazonaws.com", "cloudwatch.amazonaws.com"]
        }
        Action   = ["kms:GenerateDataKey*", "kms:Decrypt"]
        Resource = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
      {
        Sid       = "CloudWatchLogsEncryptLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"
          }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "conveyor" {
  name          = "alias/${local.name_prefix}"
  target_key_id = aws_kms_key.conveyor.key_id
}
