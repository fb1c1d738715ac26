terraform {
  # 1.10 brought S3-native state locking (`use_lockfile`), which the backend below relies on.
  required_version = ">= 1.10.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }

  # Partial configuration: bucket, key and region come from environments/<env>.s3.tfbackend
  # (`terraform init -backend-config=environments/dev.s3.tfbackend`). The state bucket is created
  # once per account by bootstrap/. Locking is S3-native (a lock object next to the state).
  backend "s3" {}
}
