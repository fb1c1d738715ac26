output "buckets" {
  description = "By kind: the bucket's id (name) and ARN."
  value = {
    for kind, bucket in aws_s3_bucket.this : kind => {
      id  = bucket.id
      arn = bucket.arn
    }
  }
}

output "access_logs_bucket" {
  description = "The bucket that receives S3 server access logs."
  value       = aws_s3_bucket.access_logs.id
}
