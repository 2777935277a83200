"""soclake: CloudTrail and GuardDuty logs from S3 into a Parquet lake, detections in DuckDB."""

__version__ = "0.1.0"
