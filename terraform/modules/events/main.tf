# Topics, the raw-events queue with its dead-letter queue, bucket notifications, subscriptions.
#   raw ObjectCreated     -> raw-events topic     -> raw-events queue (s3_event_copy) -> DLQ
#   curated ObjectCreated -> curated-events topic -> Snowpipe (Snowflake's own queue)
#   stage user/, transactions/ ObjectCreated -> stage-events topic -> retail Snowpipes
#   notifications topic   -> e-mail (run summaries, alarms)

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id   = data.aws_caller_identity.current.account_id
  event_topics = { for bucket, n in var.bucket_notifications : n.topic => bucket }
  # Topics whose events feed Snowpipe: Snowflake's IAM user may subscribe its queues to them.
  snowpipe_topics = toset(["curated-events", "stage-events"])
}

resource "aws_sns_topic" "this" {
  for_each = toset(var.topic_kinds)

  name              = "${var.name_prefix}-${each.key}"
  kms_master_key_id = var.kms_key_arn
}

# Bucket-event topics: only the one bucket, in this account, may publish.
resource "aws_sns_topic_policy" "bucket_events" {
  for_each = local.event_topics

  arn    = aws_sns_topic.this[each.key].arn
  policy = data.aws_iam_policy_document.bucket_events_topic[each.key].json
}

data "aws_iam_policy_document" "bucket_events_topic" {
  for_each = local.event_topics

  statement {
    sid       = "BucketPublishesObjectCreated"
    effect    = "Allow"
    actions   = ["SNS:Publish"]
    resources = [aws_sns_topic.this[each.key].arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [var.buckets[each.value].arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "AccountManagesTopic"
    effect    = "Allow"
    actions   = ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic"]
    resources = [aws_sns_topic.this[each.key].arn]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${local.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = contains(local.snowpipe_topics, each.key) && length(var.snowpipe_subscriber_arns) > 0 ? [1] : []
    content {
      sid       = "SnowpipeSubscribes"
      effect    = "Allow"
      actions   = ["SNS:Subscribe"]
      resources = [aws_sns_topic.this[each.key].arn]
      principals {
        type        = "AWS"
        identifiers = var.snowpipe_subscriber_arns
      }
    }
  }
}

# Notifications: the MWAA role publishes through its IAM policy; CloudWatch alarms of this
# account publish through this statement.
resource "aws_sns_topic_policy" "notifications" {
  arn    = aws_sns_topic.this["notifications"].arn
  policy = data.aws_iam_policy_document.notifications_topic.json
}

data "aws_iam_policy_document" "notifications_topic" {
  statement {
    sid       = "CloudWatchAlarmsPublish"
    effect    = "Allow"
    actions   = ["SNS:Publish"]
    resources = [aws_sns_topic.this["notifications"].arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "AccountManagesTopic"
    effect    = "Allow"
    actions   = ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic", "SNS:Publish"]
    resources = [aws_sns_topic.this["notifications"].arn]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${local.account_id}:root"]
    }
  }
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.notification_emails)

  topic_arn = aws_sns_topic.this["notifications"].arn
  protocol  = "email"
  endpoint  = each.key
}

# --- raw-events queue and its dead-letter queue ---------------------------------------------

resource "aws_sqs_queue" "raw_events_dlq" {
  name                              = "${var.name_prefix}-raw-events-dlq"
  message_retention_seconds         = var.dead_letter_retention_seconds
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
}

resource "aws_sqs_queue" "raw_events" {
  name                              = "${var.name_prefix}-raw-events"
  visibility_timeout_seconds        = var.visibility_timeout_seconds
  message_retention_seconds         = var.message_retention_seconds
  receive_wait_time_seconds         = 20
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 300

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.raw_events_dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "raw_events_dlq" {
  queue_url = aws_sqs_queue.raw_events_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.raw_events.arn]
  })
}

# Only the raw-events topic may send to the queue, and only over TLS.
resource "aws_sqs_queue_policy" "raw_events" {
  queue_url = aws_sqs_queue.raw_events.id
  policy    = data.aws_iam_policy_document.raw_events_queue.json
}

data "aws_iam_policy_document" "raw_events_queue" {
  statement {
    sid       = "RawEventsTopicSends"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.raw_events.arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.this["raw-events"].arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.raw_events.arn]
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

resource "aws_sns_topic_subscription" "raw_events_queue" {
  topic_arn = aws_sns_topic.this["raw-events"].arn
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.raw_events.arn
  # SNS-wrapped delivery, as on the local stack; s3_event_copy reads both shapes.
  raw_message_delivery = false

  depends_on = [aws_sqs_queue_policy.raw_events]
}

# --- Bucket notifications -------------------------------------------------------------------

resource "aws_s3_bucket_notification" "this" {
  for_each = var.bucket_notifications

  bucket = var.buckets[each.key].id

  dynamic "topic" {
    for_each = each.value.prefixes
    content {
      id            = topic.value == "" ? "all-objects" : trimsuffix(topic.value, "/")
      topic_arn     = aws_sns_topic.this[each.value.topic].arn
      events        = ["s3:ObjectCreated:*"]
      filter_prefix = topic.value == "" ? null : topic.value
    }
  }

  depends_on = [aws_sns_topic_policy.bucket_events]
}

# --- A message in the dead-letter queue needs a person ----------------------------------------

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${var.name_prefix}-raw-events-dead-letters"
  alarm_description   = "Messages reached ${aws_sqs_queue.raw_events_dlq.name}: s3_event_copy failed them ${var.max_receive_count} times. Inspect, fix, then redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.raw_events_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.this["notifications"].arn]
  ok_actions          = [aws_sns_topic.this["notifications"].arn]
}

# --- Events waiting too long: the copier is paused, failing or behind ---------------------------
# SQS deletes a message when its retention runs out, and the redrive policy does not catch that:
# this alarm fires at hours, the retention is 14 days.

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  alarm_name          = "${var.name_prefix}-raw-events-oldest-message"
  alarm_description   = "The oldest event on ${aws_sqs_queue.raw_events.name} is over ${var.oldest_message_alarm_seconds / 3600} h old (SQS deletes it at ${var.message_retention_seconds / 86400} days): s3_event_copy is paused, failing or behind. See docs/runbook.md, Pause a pipeline safely."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.raw_events.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.oldest_message_alarm_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.this["notifications"].arn]
  ok_actions          = [aws_sns_topic.this["notifications"].arn]
}
