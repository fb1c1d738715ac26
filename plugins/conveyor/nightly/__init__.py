"""nightly_file_ingestion: config-driven nightly copies from source buckets to the raw bucket."""
