provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.tags, {
      project     = "conveyor"
      environment = var.environment
      managed-by  = "terraform"
    })
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}
