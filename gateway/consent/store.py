"""Durable per-device consent state: SQLite (WAL) in `<state>/worker-N/consent.db`.

One row per device, written in one transaction per batch of consent messages, never a
whole-file rewrite. The hot path reads an in-memory copy. Keys are `product`/`device` as on
the wire: the file is the gateway's own local state, like the broker's retained store.

A store that was lost is told apart from a first start: the database holds a random id
that a marker file beside it (`consent.db.id`) repeats. A missing, damaged or replaced
database under an existing marker is reported (one line naming the file) and rebuilt from
the broker's retained consent messages; the consent feed's sync (see `feed.py`) keeps data
from flowing until then, so "no state" is never read as "everyone consents".
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

from gateway.consent.state import MAX_DEVICE_ID, ConsentState
from gateway.durable import replace_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS consent (
    digest BLOB PRIMARY KEY,
    withdrawn INTEGER NOT NULL,
    toggles TEXT NOT NULL
) WITHOUT ROWID;
"""

Change = tuple[str, str, ConsentState]


class StoreError(Exception):
    """The store could not be written (e.g. disk full); nothing of the change was applied."""


MEMO_SIZE = 1 << 20


class ConsentStore:
    def __init__(self, path: Path | None = None, key: bytes = bytes(32)) -> None:
        self.path = path
        self._key = key
        # Why the store had to be rebuilt at open ("missing", "damaged", "reset"), or None.
        self.lost: str | None = None
        self._lock = threading.Lock()
        self._states: dict[bytes, ConsentState] = {}  # digest -> state: the truth
        # (product, device) -> state or None: saves the digest on the hot path (bounded;
        # device ids come from topics).
        self._memo: dict[tuple[str, str], ConsentState | None] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._open(path)

    # -- reads (hot path) -------------------------------------------------------------------

    def get(self, product: str, device: str) -> ConsentState | None:
        try:
            return self._memo[product, device]
        except KeyError:
            pass
        state = self._states.get(self._digest(product, device))
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[product, device] = state
        return state

    def __len__(self) -> int:
        return len(self._states)

    def _digest(self, product: str, device: str) -> bytes:
        msg = product.encode() + b"\x00" + device.encode()
        return hashlib.blake2b(msg, key=self._key, digest_size=16).digest()

    # -- writes -----------------------------------------------------------------------------

    def set(self, product: str, device: str, state: ConsentState) -> ConsentState | None:
        """Store one state; returns the previous one."""
        prev = self.get(product, device)
        self.set_many([(product, device, state)])
        return prev

    def set_many(self, changes: Iterable[Change]) -> None:
        """All of `changes` durably in one transaction, or none (StoreError)."""
        todo = [(p, d, s) for p, d, s in changes if self.get(p, d) != s]
        for _, device, _ in todo:
            if not device or len(device) > MAX_DEVICE_ID:
                raise ValueError("device id is empty or longer than 128 characters")
        if not todo:
            return
        with self._lock:
            if self._db is not None:
                rows = [
                    (
                        self._digest(p, d),
                        int(s.withdrawn),
                        msgspec.json.encode(sorted(s.toggles)).decode(),
                    )
                    for p, d, s in todo
                ]
                try:
                    with self._db:
                        self._db.executemany(
                            "INSERT OR REPLACE INTO consent VALUES (?, ?, ?)", rows
                        )
                except sqlite3.OperationalError as exc:  # disk full, I/O: worth a retry
                    raise StoreError(f"consent store {self.path}: write failed: {exc}") from None
            for p, d, s in todo:
                self._states[self._digest(p, d)] = s
                self._memo[p, d] = s

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- open / recovery --------------------------------------------------------------------

    def _open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        marker = path.with_name(path.name + ".id")
        expected = marker.read_text().strip() if marker.exists() else None
        existed = path.exists()
        try:
            db, store_id = self._connect(path)
        except sqlite3.DatabaseError:
            # Garbled, or replaced by something that is no SQLite database (e.g. `{}`):
            # kept aside for inspection, never read as "no withdrawals".
            aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            os.replace(path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    path.with_name(path.name + suffix).unlink()
            self.lost = "damaged"
            db, store_id = self._connect(path)
        if self.lost is None and expected is not None:
            if not existed:
                self.lost = "missing"
            elif store_id != expected:
                self.lost = "reset"
        if store_id is None:
            store_id = secrets.token_hex(16)
            with db:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('id', ?)", (store_id,))
        if expected != store_id:
            replace_file(marker, store_id.encode() + b"\n")
        for digest, withdrawn, toggles in db.execute("SELECT * FROM consent"):
            names = msgspec.json.decode(toggles, type=list[str])
            self._states[bytes(digest)] = ConsentState(bool(withdrawn), frozenset(names))
        self._db = db

    @staticmethod
    def _connect(path: Path) -> tuple[sqlite3.Connection, str | None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.isolation_level = "DEFERRED"  # `with db:` wraps a transaction again
            row = db.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db, None if row is None else str(row[0])
