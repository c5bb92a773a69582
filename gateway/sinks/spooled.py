"""A sink that falls back to its encrypted local spool while the real sink is down.

``write`` returns only once the batch is durable somewhere: at the destination, or in the
spool, and says how many records went to the spool. It raises ``SinkError`` only when
both refuse (sink down and spool full), with ``delivered`` set to what the sink took.
A sink that acknowledged part of a batch (``SinkError.delivered``) has that part done:
only the rest is spooled, and the drain commits past it, so a slow sink makes progress
instead of being offered the same records again.

Every attempt on the real sink (direct writes, drain batches, erasures) and every batch
the full spool refused is reported to the ``observer`` (outcome ``ok``, ``error``,
``spool_full``), as is every record drained from the spool: attempts and records are
counted apart, so a retried batch is one more attempt, not its size in failed records.

Order is kept: while anything is spooled, new batches are appended behind it instead of
overtaking it. A background thread (started by ``open``, stopped by ``close``) drains the
spool to the sink every ``retry_s`` and commits spooled records only after the sink
accepted them, so a crash at any point loses nothing (a batch may be sent twice; sinks
dedupe on ``msg_id`` where the destination can).

Erasure requests take the same path (parked in the spool under a reserved kind), so an
erasure never overtakes records of the device it erases.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from gateway.sinks.base import (
    ERASURE_KIND,
    ErasureRequest,
    OutRecord,
    Sink,
    SinkError,
    check_batch,
    device_of,
    erasure_body,
)
from gateway.spool.spool import Spool, SpoolError, SpoolFull

__all__ = ["DeliveryObserver", "Pending", "SpooledSink"]

log = logging.getLogger(__name__)

DRAIN_BATCH = 500


class DeliveryObserver(Protocol):
    """Where a ``SpooledSink`` reports what it did (``gateway.internal_events.Events``)."""

    def sink_attempt(self, sink: str, region: str, outcome: str, error: str = "") -> None: ...

    def spool_drained(self, sink: str, region: str, records: int) -> None: ...


class SpooledSink:
    """``Sink`` wrapper; owns ``sink`` and ``spool`` (``close`` closes both)."""

    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        retry_s: float,
        drain_batch: int = DRAIN_BATCH,
        observer: DeliveryObserver | None = None,
    ) -> None:
        if retry_s <= 0 or drain_batch <= 0:
            raise ValueError("retry_s and drain_batch must be > 0")
        self.sink = sink
        self.spool = spool
        self.retry_s = retry_s
        self.drain_batch = drain_batch
        self.name = sink.name
        self.region = sink.region
        # Held across "spool empty? -> write to sink" so a direct write can never overtake
        # spooled records; the drain takes it only around peek/commit, not while sending.
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()  # one drain at a time (thread or caller)
        self._sink_up = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer = observer

    @property
    def sink_up(self) -> bool:
        """Whether the last attempt to reach the sink succeeded."""
        return self._sink_up

    @property
    def spooled_records(self) -> int:
        return self.spool.records

    @property
    def spooled_bytes(self) -> int:
        return self.spool.bytes

    def open(self) -> None:
        try:
            self.sink.open()
            self._sink_up = True
        except SinkError as exc:
            # Not fatal: records go to the spool until the sink can be reached.
            self._sink_up = False
            log.warning("%s sink %s: down at open (%s); spooling", self.name, self.region, exc)
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"spool-drain-{self.name}-{self.region}", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self.sink.close()
        self.spool.close()

    def write(self, batch: Sequence[OutRecord]) -> int:
        """Durable at the destination or in the spool on return; returns how many records
        went to the spool (0: all of them are at the destination)."""
        if not batch:
            return 0
        # A record no sink can take must never reach the spool, where it would block
        # the drain forever.
        check_batch(self.region, batch)
        with self._lock:
            if self.spool.records:
                self._append(batch)  # behind what is spooled, never ahead of it
                return len(batch)
            try:
                self.sink.write(batch)
            except SinkError as exc:
                return self._spool_rest(batch, exc)
            self._delivered()
            return 0

    def begin(self, batch: Sequence[OutRecord]) -> Pending:
        """`write` in two halves, for a sink that sends in the background (`submit`): start
        the batch and return it pending; `Pending.finish()` ends it exactly as `write`
        would (spooling what the sink refused). Until then the order lock stays held:
        nothing overtakes the batch and the drain waits. Other sinks, and a batch that
        must queue behind spooled records, are written at once."""
        submit = getattr(self.sink, "submit", None)
        if submit is None or not batch:
            return Pending(self, batch, None, self.write(batch))
        check_batch(self.region, batch)
        self._lock.acquire()
        if self.spool.records:
            self._lock.release()
            return Pending(self, batch, None, self.write(batch))
        try:
            future: concurrent.futures.Future[None] = submit(batch)
        except BaseException:
            self._lock.release()
            raise
        return Pending(self, batch, future, 0)

    def _finish(self, batch: Sequence[OutRecord], future: concurrent.futures.Future[None]) -> int:
        """The second half of `begin` (order lock held, released here)."""
        try:
            try:
                future.result()
            except SinkError as exc:
                return self._spool_rest(batch, exc)
            self._delivered()
            return 0
        finally:
            self._lock.release()

    def _spool_rest(self, batch: Sequence[OutRecord], exc: SinkError) -> int:
        """The sink refused the batch (order lock held): what it acknowledged is done, only
        the rest is spooled. SinkError (with `delivered`) when the spool refuses too."""
        self._failed(exc)
        done = min(max(exc.delivered, 0), len(batch))
        try:
            self._append(batch[done:])
        except SinkError as err:
            raise SinkError(str(err), done) from err
        return len(batch) - done

    def erase(self, product: str, device: str, requested_at: float, *, send: bool = True) -> int:
        return self.erase_many([(product, device)], requested_at, send=send)[0]

    def erase_many(
        self, devices: Sequence[tuple[str, str]], requested_at: float, *, send: bool = True
    ) -> tuple[int, int]:
        """Remove these (product, pseudonym) pairs' records from the spool (never delivered
        now), then, when ``send``, erase at the destination or park the requests in the
        spool; returns the records removed (spooled, at the destination as far as it
        tells). SinkError when not possible yet."""
        doomed = set(devices)
        # The drain lock too: a rewrite between a drain's peek and its commit would make
        # it commit the wrong records.
        with self._drain_lock, self._lock:
            try:
                erased = self.spool.rewrite(
                    lambda r: r.kind == ERASURE_KIND or (r.product, device_of(r)) not in doomed
                )
            except SpoolError as exc:
                raise SinkError(f"{self.name} sink {self.region}: spool erase failed") from exc
            if not send or not devices:
                return erased, 0
            if self.spool.records == 0:
                try:
                    at_sink = self.sink.erase_many(devices, requested_at)
                    self._delivered()
                    return erased, at_sink
                except SinkError as exc:
                    self._failed(exc)
            markers = []
            for product, device in devices:
                body = erasure_body(product, device, requested_at)
                markers.append(
                    OutRecord(
                        hashlib.sha256(body).hexdigest(), product, ERASURE_KIND, self.region, body
                    )
                )
            self._append(markers)
            return erased, 0

    def drop_where(self, unwanted: Callable[[OutRecord], bool]) -> int:
        """Remove spooled records (retention); they are never delivered. Returns how many."""
        with self._drain_lock, self._lock:
            try:
                return self.spool.rewrite(lambda r: not unwanted(r))
            except SpoolError as exc:
                raise SinkError(f"{self.name} sink {self.region}: spool rewrite failed") from exc

    def drain(self) -> int:
        """Move spooled records to the sink until it is empty or the sink fails.

        Returns how many records were delivered (and committed) in this call.
        """
        moved = 0
        with self._drain_lock:
            while not self._stop.is_set():
                with self._lock:
                    batch = self.spool.peek(self.drain_batch)
                if not batch:
                    break
                for run in _runs(batch):
                    try:
                        self._deliver(run)
                    except SinkError as exc:
                        self._failed(exc)
                        # The drain moves past what the sink acknowledged: a slow sink
                        # is never offered the same head again.
                        moved += self._commit(min(max(exc.delivered, 0), len(run)))
                        return moved
                    self._delivered()
                    moved += self._commit(len(run))
        return moved

    def _commit(self, n: int) -> int:
        if n:
            with self._lock:
                self.spool.commit(n)
            if self._observer is not None:
                self._observer.spool_drained(self.name, self.region, n)
        return n

    # -- internals -------------------------------------------------------------------

    def _append(self, batch: Sequence[OutRecord]) -> None:
        try:
            self.spool.append(batch)
        except SpoolFull:
            self._attempt("spool_full", "SpoolFull")
            raise SinkError(f"{self.name} sink {self.region}: down and spool full") from None
        except SpoolError as exc:
            self._attempt("spool_full", type(exc).__name__)
            raise SinkError(f"{self.name} sink {self.region}: down and spool failed") from exc

    def _attempt(self, outcome: str, error: str = "") -> None:
        if self._observer is not None:
            self._observer.sink_attempt(self.name, self.region, outcome, error)

    def _delivered(self) -> None:
        self._attempt("ok")
        self._sink_up = True

    def _failed(self, exc: SinkError) -> None:
        self._attempt("error", str(exc))
        self._down(exc)

    def _deliver(self, run: Sequence[OutRecord]) -> None:
        if run[0].kind != ERASURE_KIND:
            self.sink.write(run)
            return
        for i, marker in enumerate(run):
            try:
                req = msgspec.json.decode(marker.body, type=ErasureRequest)
            except msgspec.DecodeError:
                # Only our own code writes markers, into an authenticated spool.
                raise SinkError("spooled erasure request is undecodable", i) from None
            try:
                self.sink.erase(req.product, req.device, req.requested_at)
            except SinkError as exc:
                raise SinkError(str(exc), i) from exc

    def _down(self, exc: BaseException) -> None:
        if self._sink_up:
            log.warning("%s sink %s: down (%s); spooling", self.name, self.region, exc)
        self._sink_up = False

    def _run(self) -> None:
        while not self._stop.wait(self.retry_s):
            if self.spool.records == 0:
                continue
            try:
                self.drain()
            except Exception as exc:  # keep draining later; never lose the thread
                self._sink_up = False
                log.error(
                    "%s sink %s: drain failed: %s", self.name, self.region, type(exc).__name__
                )


class Pending:
    """A batch a `SpooledSink` has begun; `finish` (or `abandon`) exactly once."""

    def __init__(
        self,
        owner: SpooledSink,
        batch: Sequence[OutRecord],
        future: concurrent.futures.Future[None] | None,
        spooled: int,
    ) -> None:
        self.owner = owner
        self.batch = batch
        self._future = future
        self._spooled = spooled

    def finish(self) -> int:
        """Durable at the destination or in the spool on return; how many went to the spool.
        SinkError as from `SpooledSink.write`."""
        future, self._future = self._future, None
        if future is None:
            return self._spooled
        return self.owner._finish(self.batch, future)

    def abandon(self) -> None:
        """The worker stops without waiting: nothing of the batch is acknowledged to the
        source, so the broker redelivers whatever the sink did not get."""
        future, self._future = self._future, None
        if future is not None:
            self.owner._lock.release()


def _runs(batch: Sequence[OutRecord]) -> list[Sequence[OutRecord]]:
    """Split into consecutive runs of data records and of erasure markers, in order."""
    runs: list[Sequence[OutRecord]] = []
    start = 0
    for i in range(1, len(batch) + 1):
        if i == len(batch) or (batch[i].kind == ERASURE_KIND) != (
            batch[start].kind == ERASURE_KIND
        ):
            runs.append(batch[start:i])
            start = i
    return runs
