"""s3_event_copy: S3 ObjectCreated events from SQS -> server-side copies raw -> curated."""
