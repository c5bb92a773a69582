"""The `aggregate` action: a value that a text allows only as statistics never appears in a
per-device record. The gateway counts distinct devices per (product, region, country) per
window and, once the window has closed, emits one statistics record per region, with every
cell below the policy's k-anonymity threshold suppressed and no device named.

Observations are kept as keyed digests of (country, device pseudonym), appended durably before
the batch that carried them is acknowledged, so a restart within a window neither loses nor
double-counts a device. Each line of that log is sealed (AES-GCM, a key of its own): in clear
it would show, per window, how many devices each country had, the cells under k included.

With several workers (`gateway run --workers N`) each worker logs what it observes, and only
worker 0 emits: it reads the others' logs as they grow, so a device seen by two workers is
one device and k applies to the fleet's counts, not to each worker's share. It emits a
window `grace_s` after its end (the others' last observations are durable by then) and
records how far it has emitted in `aggregate.emitted` beside the workers' directories; the
others then forget those windows.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from collections import defaultdict
from collections.abc import Callable
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
Cells = defaultdict[Window, defaultdict[str, set[str]]]  # window -> country -> digests
MARKER = "aggregate.emitted"
POLL_S = 1.0  # how often the other workers' logs (or worker 0's marker) are looked at


def _cells() -> Cells:
    return defaultdict(lambda: defaultdict(set))


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
_DAMAGED = (msgspec.DecodeError, binascii.Error, InvalidTag, ValueError)


class _Peer:
    """Another worker's log, read as it grows: it only appends, until that worker rewrites
    it (a new file) or removes it. A rewritten file is told by its first line: every line
    starts with a random nonce (inode numbers can be reused)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head = b""
        self.offset = 0
        self.cells = _cells()

    def read(self, open_line: Callable[[bytes], Observation], emitted_until: float) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        head = data[: data.find(b"\n") + 1]
        if head != self.head or len(data) < self.offset:
            self.head, self.offset, self.cells = head, 0, _cells()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        new, self.offset = data[self.offset : end], max(self.offset, end)
        for line in new.splitlines():
            try:
                o = open_line(line)
            except _DAMAGED:
                continue
            if o.start + o.length > emitted_until:
                self.cells[o.product, o.region, o.start, o.length][o.country].add(o.digest)


class Aggregator:
    def __init__(
        self,
        key: bytes,
        log: Path | None = None,
        *,
        shared: Path | None = None,
        emits: bool = True,
        grace_s: float = 0.0,
    ) -> None:
        """`shared`: the directory holding every worker's directory (the others' logs are
        `shared/*/<log's name>`, the marker `shared/aggregate.emitted`); `emits`: this worker
        emits the statistics (worker 0)."""
        self._key = key
        self._aead = AESGCM(derive(key, "aggregate-log"))
        self._log = log
        self._cells = _cells()
        self._pending: list[bytes] = []
        self._next_close = float("inf")  # earliest end of an open window: `due` is cheap
        self.damaged_lines = 0
        self._shared = shared if log is not None else None
        self._mine = log.resolve() if log is not None else None  # told apart from the peers'
        self._emits = emits
        self._grace = grace_s
        self._peers: dict[Path, _Peer] = {}
        self._next_poll = 0.0
        self._emitted_until = self._read_marker()
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
            except _DAMAGED:  # a torn last line after a crash (that one is lost), or not ours
                self.damaged_lines += 1
                continue
            if o.start + o.length <= self._emitted_until:
                continue  # emitted before a crash left it in the log
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
        if self._shared is not None and now >= self._next_poll:
            self._next_poll = now + POLL_S
            if self._emits:
                self._read_peers()
            else:
                self._forget_emitted()
        cutoff = now - self._grace
        if not self._emits or cutoff < self._next_close:
            return []
        out = []
        for w in sorted(self._windows()):
            product, region, start, length = w
            if start + length > cutoff or product not in refs:
                continue
            ref, k = refs[product]
            merged = self._merged(w)
            counts = {c: len(d) for c, d in sorted(merged.items()) if len(d) >= k}
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
            for peer in self._peers.values():
                peer.cells.pop((s.product, s.region, start, length), None)
        self._next_close = self._earliest_close()
        if self._log is None:
            return
        if self._shared is not None:
            # The marker first: after a crash here, a window is either not marked (emitted
            # again from intact logs, same id, same counts) or marked and skipped on load.
            until = max(self._emitted_until, *(s.window_end.timestamp() for s in stats))
            replace_file(self._shared / MARKER, f"{until:.0f}\n".encode())
            self._emitted_until = until
        self.sync()
        self._rewrite()

    # -- several workers ------------------------------------------------------------------

    def _earliest_close(self) -> float:
        return min((w[2] + w[3] for w in self._windows()), default=float("inf"))

    def _windows(self) -> set[Window]:
        return set(self._cells).union(*(p.cells for p in self._peers.values()))

    def _merged(self, w: Window) -> dict[str, set[str]]:
        """Every worker's devices of one window, per country: each device once."""
        out: defaultdict[str, set[str]] = defaultdict(set)
        for cells in (self._cells, *(p.cells for p in self._peers.values())):
            for country, digests in cells.get(w, {}).items():
                out[country] |= digests
        return out

    def _read_marker(self) -> float:
        if self._shared is None:
            return 0.0
        try:
            return float((self._shared / MARKER).read_text())
        except (OSError, ValueError):
            return 0.0

    def _read_peers(self) -> None:
        """Worker 0: what the other workers have observed since the last look."""
        assert self._shared is not None and self._log is not None
        for path in self._shared.glob(f"*/{self._log.name}"):
            if path.resolve() != self._mine:
                peer = self._peers.setdefault(path, _Peer(path))
                peer.read(self._open, self._emitted_until)
        self._next_close = self._earliest_close()

    def _forget_emitted(self) -> None:
        """The other workers: drop the windows worker 0 has emitted (from memory and log)."""
        until = self._read_marker()
        if until <= self._emitted_until:
            return
        self._emitted_until = until
        gone = [w for w in self._cells if w[2] + w[3] <= until]
        for w in gone:
            del self._cells[w]
        if gone:
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
