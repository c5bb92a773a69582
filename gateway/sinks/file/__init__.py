"""File sink: JSONL per region, one fsync per batch."""

from gateway.sinks.file.config import FileSinkConfig
from gateway.sinks.file.sink import FileSink

__all__ = ["FileSink", "FileSinkConfig"]
