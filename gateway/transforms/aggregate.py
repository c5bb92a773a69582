"""The `aggregate` action: a value that a text allows only as statistics never appears in a
per-device record. The gateway counts distinct devices per (product, region, country) per
window and, once the window has closed, emits one statistics record per region, with every
cell below the policy's k-anonymity threshold suppressed and no device named.

Observations are kept as keyed digests of (country, device pseudonym), appended durably before
the batch that carried them is acknowledged, so a restart within a window neither loses nor
double-counts a device. Each line of that log is sealed (AES-GCM, a key of its own): in clear
it would show, per window, how many devices each country had, the cells under k included.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from collections import defaultdict
from datetime import UTC, datetime
from hashlib import blake2b
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.durable import fsync_dir, replace_file, write_all
from gateway.envelope import PolicyRef
from gateway.transforms.pseudonymize import derive

Window = tuple[str, str, int, int]  # product, region, start (s), length (s)


class Observation(msgspec.Struct, array_like=True, frozen=True):
    product: str
    region: str
    start: int
    length: int
    country: str
    digest: str


class Stats(msgspec.Struct, frozen=True):
    """One closed window's counts for one product and region: what leaves instead of values."""

    id: str
    product: str
    kind: str
    region: str
    window_start: datetime
    window_end: datetime
    policy: PolicyRef
    k: int
    # country -> distinct devices; cells under k are left out, and so is any total.
    devices_by_country: dict[str, int]


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Observation)
_AAD = b"gateway-aggregate-log-v1"
_NONCE = 12


class Aggregator:
    def __init__(self, key: bytes, log: Path | None = None) -> None:
        self._key = key
        self._aead = AESGCM(derive(key, "aggregate-log"))
        self._log = log
        self._cells: defaultdict[Window, defaultdict[str, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self._pending: list[bytes] = []
        self._next_close = float("inf")  # earliest end of an open window: `due` is cheap
        self.damaged_lines = 0
        if log is not None and log.exists():
            self._load(log)

    def _seal(self, o: Observation) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, _enc.encode(o), _AAD))

    def _open(self, line: bytes) -> Observation:
        if line.startswith(b"["):  # written in clear by a version before sealing
            return _dec.decode(line)
        raw = base64.urlsafe_b64decode(line)
        return _dec.decode(self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD))

    def _load(self, log: Path) -> None:
        lines = log.read_bytes().splitlines()
        for line in lines:
            try:
                o = self._open(line)
            except (msgspec.DecodeError, binascii.Error, InvalidTag, ValueError):
                # A torn last line after a crash (that one is lost), or not ours.
                self.damaged_lines += 1
                continue
            self._cells[o.product, o.region, o.start, o.length][o.country].add(o.digest)
            self._next_close = min(self._next_close, o.start + o.length)
        if any(line.startswith(b"[") for line in lines):
            self._rewrite()  # leave nothing in clear behind

    def observe(
        self, product: str, region: str, country: str, device: str, *, at: float, length: int
    ) -> None:
        start = int(at // length) * length
        digest = blake2b(f"{country}\0{device}".encode(), key=self._key, digest_size=12).hexdigest()
        seen = self._cells[product, region, start, length][country]
        if digest not in seen:
            seen.add(digest)
            self._next_close = min(self._next_close, start + length)
            if self._log is not None:
                self._pending.append(
                    self._seal(Observation(product, region, start, length, country, digest))
                )

    def sync(self) -> None:
        """Make new observations durable: called before their messages are acknowledged."""
        if not self._pending or self._log is None:
            return
        data = b"\n".join(self._pending) + b"\n"
        new = not self._log.exists()
        fd = os.open(self._log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self._log.parent)
        self._pending.clear()

    def due(self, now: float, refs: dict[str, tuple[PolicyRef, int]]) -> list[Stats]:
        """Statistics of every window that has closed by `now`; `refs` gives each product's
        policy and k. A product no longer loaded emits nothing."""
        if now < self._next_close:
            return []
        out = []
        for w in sorted(self._cells):
            product, region, start, length = w
            if start + length > now or product not in refs:
                continue
            ref, k = refs[product]
            counts = {c: len(d) for c, d in sorted(self._cells[w].items()) if len(d) >= k}
            wid = blake2b(
                f"{product}\0{region}\0{start}\0{length}".encode(), key=self._key, digest_size=16
            ).hexdigest()
            out.append(
                Stats(
                    wid,
                    product,
                    "stats",
                    region,
                    datetime.fromtimestamp(start, UTC),
                    datetime.fromtimestamp(start + length, UTC),
                    ref,
                    k,
                    counts,
                )
            )
        return out

    def emitted(self, stats: list[Stats]) -> None:
        """Forget windows whose statistics are durably with their sinks."""
        if not stats:
            return
        for s in stats:
            start = int(s.window_start.timestamp())
            length = int(s.window_end.timestamp()) - start
            self._cells.pop((s.product, s.region, start, length), None)
        self._next_close = min((w[2] + w[3] for w in self._cells), default=float("inf"))
        if self._log is None:
            return
        self.sync()
        self._rewrite()

    def _rewrite(self) -> None:
        """The log replaced by the open windows' observations alone."""
        assert self._log is not None
        lines = [
            self._seal(Observation(p, r, st, ln, c, d))
            for (p, r, st, ln), by in self._cells.items()
            for c, ds in by.items()
            for d in sorted(ds)
        ]
        if lines:
            replace_file(self._log, b"\n".join(lines) + b"\n")
        else:
            with contextlib.suppress(FileNotFoundError):
                self._log.unlink()
            fsync_dir(self._log.parent)


def encode_stats(s: Stats) -> bytes:
    return _enc.encode(s)
