# Every bucket the DAGs use, all alike: SSE-KMS with the environment's key, versioning, public
# access blocked, ACLs disabled (bucket owner enforced), TLS-only, server access logs, lifecycle.
# Plus one access-log bucket, which only S3's logging service writes to.

locals {
  buckets = toset(var.bucket_kinds)
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice; every object here can be re-derived from its upstream source, so a second region is not worth doubling storage.
  #checkov:skip=CKV2_AWS_62:Event notifications are wired where a consumer exists (raw, curated, stage: modules/events); the other buckets have no event consumer.
  for_each = local.buckets

  bucket        = "${var.name_prefix}-${each.key}"
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id

  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${each.key}/"
}

# Lifecycle, per bucket kind (the reasons are in terraform/README.md, "Storage lifecycle"):
# every bucket aborts stale multipart uploads and drops replaced versions after a while; kinds in
# `infrequent_access_after_days` move to STANDARD_IA; only reproducible or transient kinds in
# `expire_after_days` expire. Objects under 128 KiB (manifests, the watermark) never transition:
# IA bills 128 KiB minimum per object.
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id

  transition_default_minimum_object_size = "all_storage_classes_128K"

  lifecycle {
    precondition {
      condition = !(contains(keys(var.infrequent_access_after_days), each.key) && contains(keys(var.expire_after_days), each.key)) || (
        lookup(var.infrequent_access_after_days, each.key, 0) < lookup(var.expire_after_days, each.key, 0)
      )
      error_message = "Bucket kind ${each.key}: infrequent_access_after_days must be less than expire_after_days (S3 rejects a transition on or after expiry)."
    }
  }

  rule {
    id     = "abort-incomplete-uploads-and-expire-old-versions"
    status = "Enabled"
    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_upload_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expire_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  # Transient or reproducible data only: inbound files are moved out within minutes, stage files
  # are loaded by Snowpipe, raw objects are copied to curated (events/) or re-copied from source
  # (landing/). Not ingestion: the source keeps only each row's current version, so a window's
  # file is the one copy of the versions overwritten since (and `_state/` holds the watermark).
  dynamic "rule" {
    for_each = contains(keys(var.expire_after_days), each.key) ? [var.expire_after_days[each.key]] : []
    content {
      id     = "expire-transient-objects"
      status = "Enabled"
      filter {}

      expiration {
        days = rule.value
      }
    }
  }

  # Kept data read rarely after its first days (ingestion windows, star exports, event copies).
  dynamic "rule" {
    for_each = contains(keys(var.infrequent_access_after_days), each.key) ? [var.infrequent_access_after_days[each.key]] : []
    content {
      id     = "transition-to-standard-ia"
      status = "Enabled"
      filter {}

      transition {
        days          = rule.value
        storage_class = "STANDARD_IA"
      }
    }
  }

  dynamic "rule" {
    for_each = each.key == "archive" ? [var.archive_transition_days] : []
    content {
      id     = "archive-to-glacier-instant-retrieval"
      status = "Enabled"
      filter {}

      transition {
        days          = rule.value
        storage_class = "GLACIER_IR"
      }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id
  policy   = data.aws_iam_policy_document.tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.buckets

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this[each.key].arn,
      "${aws_s3_bucket.this[each.key].arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# --- Server access logs ----------------------------------------------------------------------

data "aws_caller_identity" "current" {}

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log target bucket; logging its own access would log the logs.
  #checkov:skip=CKV_AWS_144:Access logs are an audit aid, not data; one region is enough.
  #checkov:skip=CKV_AWS_145:S3 server access logging can only write to buckets encrypted with SSE-S3 (AES256), not SSE-KMS.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events from the access-log bucket.
  bucket        = "${var.name_prefix}-access-logs"
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}

    expiration {
      days = var.access_log_expire_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs.json

  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}

data "aws_iam_policy_document" "access_logs" {
  statement {
    sid       = "S3ServerAccessLogsFromThisAccountsBuckets"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:aws:s3:::${var.name_prefix}-*"]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}
