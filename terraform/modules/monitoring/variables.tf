variable "name" {
  description = "The dashboard's name and the alarm's prefix (the name prefix)."
  type        = string
}

variable "region" {
  description = "The region the metrics are in."
  type        = string
}

variable "environment_name" {
  description = "The MWAA environment's name: the Environment dimension of its metrics."
  type        = string
}

variable "queue_name" {
  description = "The raw-events queue (s3_event_copy's input)."
  type        = string
}

variable "dead_letter_queue_name" {
  description = "The raw-events queue's dead-letter queue."
  type        = string
}

variable "oldest_message_alarm_seconds" {
  description = "The oldest-message alarm's threshold, drawn on its tile."
  type        = number
}

variable "alarm_arns" {
  description = "The alarms the dashboard's alarm tile shows: dead_letters, oldest_message, failed_tasks."
  type        = map(string)

  validation {
    condition     = alltrue([for key in ["dead_letters", "oldest_message", "failed_tasks"] : contains(keys(var.alarm_arns), key)])
    error_message = "Needs the dead_letters, oldest_message and failed_tasks alarms' ARNs."
  }
}

variable "alarm_topic_arn" {
  description = "Where the scheduler-heartbeat alarm publishes (the notifications topic)."
  type        = string
}

variable "scheduler_silence_minutes" {
  description = "Minutes without a scheduler heartbeat before the alarm fires (MWAA's scheduler beats every few seconds)."
  type        = number
  default     = 5
}
