# Run once per AWS account, with local state, before the root module's first `terraform init`:
#   terraform -chdir=terraform/bootstrap init && terraform -chdir=terraform/bootstrap apply
# It creates the bucket that holds every environment's state. Locking needs no DynamoDB table:
# the S3 backend's `use_lockfile = true` writes a lock object next to the state.

terraform {
  required_version = ">= 1.10.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

variable "aws_region" {
  description = "Region of the state bucket."
  type        = string
  default     = "eu-west-2"
}

variable "state_bucket_name" {
  description = "Name of the state bucket; default conveyor-terraform-state-<account id>."
  type        = string
  default     = null
}

provider "aws" {
  region = var.aws_region
  default_tags {
    tags = { project = "conveyor", managed-by = "terraform" }
  }
}

data "aws_caller_identity" "current" {}

locals {
  bucket = coalesce(var.state_bucket_name, "conveyor-terraform-state-${data.aws_caller_identity.current.account_id}")
}

resource "aws_kms_key" "state" {
  description             = "Conveyor Terraform state"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountIamPoliciesGrantUse"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

resource "aws_s3_bucket" "state" {
  #checkov:skip=CKV_AWS_18:Access to the state is audited by CloudTrail (management and data events); a log bucket for the bootstrap bucket would need a bootstrap of its own.
  #checkov:skip=CKV_AWS_144:Terraform state can be re-imported; versioning covers mistakes, a second region is not needed.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events from the state bucket.
  bucket = local.bucket

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_ownership_controls" "state" {
  bucket = aws_s3_bucket.state.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "state" {
  bucket                  = aws_s3_bucket.state.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "state" {
  bucket = aws_s3_bucket.state.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "state" {
  bucket = aws_s3_bucket.state.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.state.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "state" {
  bucket = aws_s3_bucket.state.id
  rule {
    id     = "keep-old-state-versions-90-days"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 90
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_policy" "state" {
  bucket = aws_s3_bucket.state.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.state.arn, "${aws_s3_bucket.state.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
  depends_on = [aws_s3_bucket_public_access_block.state]
}

output "state_bucket" {
  description = "Put this in environments/<env>.s3.tfbackend as `bucket`."
  value       = aws_s3_bucket.state.id
}
