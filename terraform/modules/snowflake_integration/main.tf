# The IAM role a Snowflake storage integration assumes to read the curated and stage buckets
# (COPY INTO, Snowpipe). Two steps, because each side needs the other's identifiers:
#   1. apply without snowflake_iam_user_arn: the role exists, trusting only this account;
#   2. CREATE STORAGE INTEGRATION ... STORAGE_AWS_ROLE_ARN = '<role_arn output>'; DESC INTEGRATION;
#      set snowflake_iam_user_arn and snowflake_external_id from it; apply again.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  integrated = var.snowflake_iam_user_arn != ""
  principal  = local.integrated ? var.snowflake_iam_user_arn : "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
}

resource "aws_iam_role" "this" {
  name               = "${var.name_prefix}-snowflake-storage-integration"
  description        = "Assumed by Snowflake's storage integration to read the curated and stage buckets"
  assume_role_policy = data.aws_iam_policy_document.trust.json
}

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [local.principal]
    }
    # Snowflake's confused-deputy guard: only the integration with this external id may assume.
    dynamic "condition" {
      for_each = var.snowflake_external_id != "" ? [var.snowflake_external_id] : []
      content {
        test     = "StringEquals"
        variable = "sts:ExternalId"
        values   = [condition.value]
      }
    }
  }
}

resource "aws_iam_role_policy" "read_buckets" {
  name   = "read-load-buckets"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.read_buckets.json
}

data "aws_iam_policy_document" "read_buckets" {
  statement {
    sid       = "ReadObjects"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [for arn in values(var.readable_buckets) : "${arn}/*"]
  }

  statement {
    sid       = "ListBuckets"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = values(var.readable_buckets)
  }

  statement {
    sid       = "DecryptObjects"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}
