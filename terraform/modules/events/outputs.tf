output "topic_arns" {
  description = "By kind: topic ARN."
  value       = { for kind, topic in aws_sns_topic.this : kind => topic.arn }
}

output "queue_arns" {
  description = "By kind: queue ARN (with `<kind>-dlq` for the dead-letter queue)."
  value = {
    "raw-events"     = aws_sqs_queue.raw_events.arn
    "raw-events-dlq" = aws_sqs_queue.raw_events_dlq.arn
  }
}

output "queue_urls" {
  description = "By kind: queue URL."
  value = {
    "raw-events"     = aws_sqs_queue.raw_events.id
    "raw-events-dlq" = aws_sqs_queue.raw_events_dlq.id
  }
}
