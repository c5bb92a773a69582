"""Logging setup: text for people, or JSON lines for log pipelines (`--log-format json`).

A JSON line has `time`, `level`, `logger`, `message`, and every label the event carries as a
field of its own, named as in the metrics (product, kind, reason, field, sink, region...). An
exception is given by its type only: its message might quote what it failed on.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_encode = msgspec.json.Encoder().encode


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": getattr(record, "text", None) or record.getMessage(),
        }
        labels = getattr(record, "labels", None)
        if isinstance(labels, dict):
            for k, v in labels.items():
                doc.setdefault(str(k), v if isinstance(v, int | float) else str(v))
        if record.exc_info and record.exc_info[0] is not None:
            doc["exception"] = record.exc_info[0].__name__
        return _encode(doc).decode()


def setup(verbose: bool, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
