"""MinIO / S3 bucket notifications turned into upload events."""
