# The operator's view: one CloudWatch dashboard (docs/runbook.md opens with what each tile shows
# and what to do when it is red) and the alarm on the scheduler's heartbeat. The queues' alarms
# live with the queues (modules/events), the failed-tasks alarm with the environment (modules/mwaa).
#
# MWAA publishes Airflow's StatsD metrics under AmazonMWAA (DAGDurationSuccess/Failed per DAG,
# SchedulerHeartbeat, TaskInstanceFailures) and its containers' under AWS/MWAA (CPUUtilization,
# MemoryUtilization per Cluster, QueuedTasks, ApproximateAgeOfOldestTask), with no setting needed.

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  # Plain JSON with a few placeholders, so tests/unit/test_terraform.py can check every tile.
  dashboard_body = templatefile("${path.module}/dashboard.json.tftpl", {
    region                        = var.region
    environment                   = var.environment_name
    queue                         = var.queue_name
    dead_letter_queue             = var.dead_letter_queue_name
    oldest_message_seconds        = var.oldest_message_alarm_seconds
    oldest_message_hours          = var.oldest_message_alarm_seconds / 3600
    dead_letters_alarm_arn        = var.alarm_arns["dead_letters"]
    oldest_message_alarm_arn      = var.alarm_arns["oldest_message"]
    failed_tasks_alarm_arn        = var.alarm_arns["failed_tasks"]
    scheduler_heartbeat_alarm_arn = aws_cloudwatch_metric_alarm.scheduler_heartbeat.arn
  })
}

# A scheduler that stops heartbeating schedules nothing: no runs, no retries, no deadline alerts
# (those are the scheduler's to raise). Missing data is the symptom, so it breaches.
resource "aws_cloudwatch_metric_alarm" "scheduler_heartbeat" {
  alarm_name          = "${var.name}-scheduler-heartbeat"
  alarm_description   = "No scheduler heartbeat from MWAA environment ${var.environment_name} for ${var.scheduler_silence_minutes} minutes: nothing is being scheduled. See docs/runbook.md, The dashboard."
  namespace           = "AmazonMWAA"
  metric_name         = "SchedulerHeartbeat"
  dimensions          = { Function = "Scheduler", Environment = var.environment_name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = var.scheduler_silence_minutes
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
}
