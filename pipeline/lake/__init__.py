"""The Parquet lake: storage (local or S3), the partitioned writer and the ingest ledger."""

from pipeline.lake.ledger import Ledger, ObjectEntry
from pipeline.lake.store import LocalStore, S3Store, open_store
from pipeline.lake.writer import StreamingPartitionWriter, WrittenFile

__all__ = ["Ledger", "LocalStore", "ObjectEntry", "StreamingPartitionWriter", "S3Store", "WrittenFile", "open_store"]
