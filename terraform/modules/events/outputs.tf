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

output "queue_names" {
  description = "By kind: queue name (the QueueName dimension of its CloudWatch metrics)."
  value = {
    "raw-events"     = aws_sqs_queue.raw_events.name
    "raw-events-dlq" = aws_sqs_queue.raw_events_dlq.name
  }
}

output "alarm_arns" {
  description = "The queues' alarms: dead_letters (the DLQ holds messages), oldest_message (events waiting too long)."
  value = {
    dead_letters   = aws_cloudwatch_metric_alarm.dead_letters.arn
    oldest_message = aws_cloudwatch_metric_alarm.oldest_message.arn
  }
}

output "oldest_message_alarm_seconds" {
  description = "The oldest-message alarm's threshold (the dashboard draws it)."
  value       = var.oldest_message_alarm_seconds
}
