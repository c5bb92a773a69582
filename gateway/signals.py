"""The signals of `gateway run`, caught from the process's first moment.

A supervisor may signal the process while it still imports (a second or more on a small
machine): SIGHUP's default action would kill it, SIGTERM's would skip the clean stop. So
the entry points (`gateway/__main__.py`, the `gateway` script) install these handlers
before importing anything else of the gateway, and `run` reads the events they set. This
module imports nothing but the standard library, and `gateway/__init__.py` imports lazily.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType

STOP = threading.Event()  # SIGTERM, SIGINT
RELOAD = threading.Event()  # SIGHUP


def _stop(signum: int, frame: FrameType | None) -> None:
    STOP.set()


def _reload(signum: int, frame: FrameType | None) -> None:
    RELOAD.set()


def install() -> None:
    """Route SIGTERM/SIGINT to STOP and SIGHUP to RELOAD (main thread; idempotent)."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _reload)


def is_run(argv: Sequence[str]) -> bool:
    """Whether the command line is `gateway [options] run ...` (other commands keep the
    default signal behaviour)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return command == "run"
