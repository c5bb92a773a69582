"""File sink: appends JSONL to ``<dir>/<region>/records.jsonl``, one fsync per batch; a new
UTC day rolls it to ``records-<day>.jsonl`` (files.py), for retention.

Group commit: every line of a batch is written with one ``write`` and made durable with
one ``os.fsync``, so the fsync cost is paid per batch, not per record. A crash can leave
a torn last line; ``open()`` cuts it off (its batch never returned, so it is redelivered).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from gateway.durable import fsync_dir, write_all
from gateway.sinks.base import OutRecord, SinkError, check_batch, check_token, erasure_body
from gateway.sinks.file import files
from gateway.sinks.file.config import FileSinkConfig
from gateway.sinks.file.files import RECORDS_FILE

__all__ = ["FileSink"]

log = logging.getLogger(__name__)

ERASURE_FILE = "erasure.jsonl"
_DEVICE = re.compile(rb'"device":"([^"]*)"')
_REPAIR_CHUNK = 64 * 1024


class FileSink:
    name = "file"
    remote = False  # every worker erases its own files

    def __init__(self, config: FileSinkConfig, region: str) -> None:
        check_token("region", region)
        self.config = config
        self.region = region
        self.dir = Path(config.dir) / region
        self._lock = threading.Lock()
        self._records_fd: int | None = None
        self._erasure_fd: int | None = None
        self._day: str | None = None  # UTC day of records.jsonl, once checked
        self.clock: Callable[[], float] = time.time  # tests move it

    @property
    def records_path(self) -> Path:
        return self.dir / RECORDS_FILE

    @property
    def erasure_path(self) -> Path:
        return self.dir / ERASURE_FILE

    def open(self) -> None:
        with self._lock:
            self._open_locked()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def write(self, batch: Sequence[OutRecord]) -> None:
        if not batch:
            return
        check_batch(self.region, batch)
        data = b"".join([part for rec in batch for part in (rec.body, b"\n")])
        with self._lock:
            self._append_locked("records", data)

    def erase(self, product: str, device: str, requested_at: float) -> None:
        self.erase_many([(product, device)], requested_at)

    def erase_many(self, devices: Sequence[tuple[str, str]], requested_at: float) -> int:
        """Remove the devices' records from the files, then log the requests (one append,
        one fsync) for whoever copied the files on."""
        n = self.erase_local({d for _, d in devices})
        data = b"".join(erasure_body(p, d, requested_at) + b"\n" for p, d in devices)
        with self._lock:
            self._append_locked("erasure", data)
        return n

    def erase_local(self, devices: Collection[str]) -> int:
        """Rewrite each records file without the records of these pseudonyms (one pass per
        file); returns how many went."""
        for device in devices:
            check_token("device", device)
        if not devices:
            return 0

        def doomed(line: bytes) -> bool:
            m = _DEVICE.search(line)
            return m is not None and m.group(1).decode() in devices

        quick = None
        if len(devices) == 1:  # one device: skip files without it cheaply
            quick = b'"device":"' + next(iter(devices)).encode() + b'"'
        with self._lock:
            self._open_locked()
            dropped = 0
            try:
                for p in files.record_files(self.dir):
                    dropped += files.rewrite(p, doomed, quick)
            except OSError as exc:
                raise SinkError(f"file sink {self.region}: erase failed: {exc.strerror}") from None
            finally:
                if dropped:  # the fd may point at a renamed inode: reopen on the new file
                    self._close_locked()
            return dropped

    def expire(self, now: float, days_of: files.DaysOf) -> int:
        """Remove records older than their retention (whole days); returns how many."""
        with self._lock:
            self._open_locked()
            try:
                self._roll_locked(now)
                return files.expire(self.dir, files.day_of(now), days_of)
            except OSError as exc:
                raise SinkError(f"file sink {self.region}: expiry failed: {exc.strerror}") from None

    # -- internals (lock held) -------------------------------------------------------

    def _open_locked(self) -> None:
        if self._records_fd is not None and self._erasure_fd is not None:
            return
        self._close_locked()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._records_fd = _open_append(self.records_path)
            self._erasure_fd = _open_append(self.erasure_path)
            # Make the (possibly new) directory entries durable too.
            fsync_dir(self.dir)
        except OSError as exc:
            self._close_locked()
            raise SinkError(f"file sink {self.region}: cannot open: {exc.strerror}") from None

    def _close_locked(self) -> None:
        for fd in (self._records_fd, self._erasure_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    log.warning("file sink %s: close failed", self.region)
        self._records_fd = None
        self._erasure_fd = None

    def _roll_locked(self, now: float) -> None:
        """A new UTC day starts a new records file (see files.py)."""
        today = files.day_of(now)
        if self._day == today:
            return
        self._open_locked()
        assert self._records_fd is not None
        st = os.fstat(self._records_fd)
        # The day this process wrote it on, else (just opened) the day of its last write.
        day = self._day or (files.day_of(st.st_mtime) if st.st_size else today)
        if st.st_size and day != today:
            self._close_locked()
            files.roll(self.dir, day)
            self._open_locked()
        self._day = today

    def _append_locked(self, which: str, data: bytes) -> None:
        # A previous failure closed the files; reopen lazily (this also repairs a torn tail).
        self._open_locked()
        if which == "records":
            try:
                self._roll_locked(self.clock())
            except OSError as exc:
                self._close_locked()
                raise SinkError(f"file sink {self.region}: roll failed: {exc.strerror}") from None
        fd = self._records_fd if which == "records" else self._erasure_fd
        assert fd is not None
        start = os.fstat(fd).st_size
        try:
            write_all(fd, data)
            if self.config.fsync:
                os.fsync(fd)
        except OSError as exc:
            # Nothing of a failed batch may count: cut back to where it started. After a
            # failed fsync the page cache cannot be trusted, so drop the fds as well.
            try:
                os.ftruncate(fd, start)
            except OSError:
                log.warning("file sink %s: could not cut back a failed write", self.region)
            self._close_locked()
            raise SinkError(f"file sink {self.region}: write failed: {exc.strerror}") from None


def _open_append(path: Path) -> int:
    # O_RDWR, not O_WRONLY: the torn-tail check reads the last bytes back.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        _repair_tail(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _repair_tail(fd: int, path: Path) -> None:
    """Cut a torn last line (no trailing newline) left by a crash mid-write."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    keep = 0
    while end > 0:
        start = max(0, end - _REPAIR_CHUNK)
        chunk = os.pread(fd, end - start, start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            keep = start + idx + 1
            break
        end = start
    os.ftruncate(fd, keep)
    os.fsync(fd)
    log.warning("file sink: cut %d bytes of a torn last line in %s", size - keep, path.name)
