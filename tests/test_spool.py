"""The encrypted spool: FIFO order, bound, crash recovery, confidentiality, integrity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sinks.base import OutRecord
from gateway.spool import Spool, SpoolCorrupt, SpoolError, SpoolFull
from gateway.spool.spool import HEADER_BYTES, LEN, TAG_BYTES

pytestmark = pytest.mark.timeout(20)

MARKER = b"PLAINTEXT-MARKER-7c1e"
KEY = bytes(range(32))


def rec(i: int, pad: int = 0) -> OutRecord:
    # Fixed width, so every record of a given pad has the same frame size.
    body = b'{"n":"%06d","note":"%s%s"}' % (i, MARKER, b"x" * pad)
    return OutRecord(f"{i:032x}", "mijia-camera", "event", "de", body)


def recs(start: int, n: int, pad: int = 0) -> list[OutRecord]:
    return [rec(i, pad) for i in range(start, start + n)]


def frame_size(r: OutRecord) -> int:
    return HEADER_BYTES + len(msgspec.msgpack.encode(r)) + TAG_BYTES


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("seg-*.spool"))


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def spool(spool_dir: Path) -> Iterator[Spool]:
    s = Spool(spool_dir, KEY, max_bytes=10 * 1024 * 1024)
    yield s
    s.close()


def test_round_trip_in_order(spool: Spool) -> None:
    assert spool.records == 0
    assert spool.bytes == 0
    assert spool.peek(10) == []
    spool.append(recs(0, 5))
    spool.append(recs(5, 5))
    assert spool.records == 10
    assert spool.bytes == sum(frame_size(r) for r in recs(0, 10))
    assert spool.peek(3) == recs(0, 3)
    assert spool.peek(100) == recs(0, 10)
    spool.commit(3)
    assert spool.records == 7
    assert spool.peek(2) == recs(3, 2)
    spool.commit(7)
    assert spool.records == 0
    assert spool.bytes == 0
    assert spool.peek(5) == []
    # Fully consumed: the segment file is gone, the next append starts a fresh one.
    assert segments(spool.dir) == []
    spool.append(recs(10, 2))
    assert spool.peek(5) == recs(10, 2)


def test_commit_more_than_spooled_is_refused(spool: Spool) -> None:
    spool.append(recs(0, 2))
    with pytest.raises(ValueError):
        spool.commit(3)
    assert spool.records == 2


def test_state_survives_reopen(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 10))
    s.commit(4)
    s.close()
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    try:
        assert s.records == 6
        assert s.peek(100) == recs(4, 6)
        s.append(recs(10, 1))
        assert s.peek(100) == recs(4, 7)
    finally:
        s.close()


def test_segments_roll_and_consumed_ones_are_deleted(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20, segment_bytes=1000)
    try:
        for b in range(10):
            s.append(recs(b * 10, 10))
        segs = segments(spool_dir)
        assert len(segs) > 5
        assert all(p.stat().st_size <= 1000 for p in segs)
        assert s.peek(1000) == recs(0, 100)
        s.commit(55)
        assert segments(spool_dir)[0] != segs[0]
        assert len(segments(spool_dir)) < len(segs)
        assert s.peek(1000) == recs(55, 45)
        s.close()
        s = Spool(spool_dir, KEY, max_bytes=1 << 20, segment_bytes=1000)
        assert s.peek(1000) == recs(55, 45)
        s.commit(45)
        assert segments(spool_dir) == []
    finally:
        s.close()


def test_bound_enforced_and_nothing_partial(spool_dir: Path) -> None:
    one = frame_size(rec(0))
    s = Spool(spool_dir, KEY, max_bytes=one * 25, segment_bytes=one * 4)
    try:
        s.append(recs(0, 20))
        with pytest.raises(SpoolFull):
            s.append(recs(20, 10))  # would reach 30 frames: refused as a whole
        assert s.records == 20
        assert s.disk_bytes <= s.max_bytes
        s.append(recs(20, 5))  # exactly at the bound is fine
        with pytest.raises(SpoolFull):
            s.append(recs(25, 1))
        assert sum(p.stat().st_size for p in segments(spool_dir)) <= s.max_bytes
        assert s.peek(100) == recs(0, 25)
        s.commit(25)
        s.append(recs(25, 10))  # room again once drained
        assert s.peek(100) == recs(25, 10)
    finally:
        s.close()


def test_record_larger_than_bound_is_refused(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=4096)
    try:
        with pytest.raises(SpoolFull):
            s.append([rec(0, pad=5000)])
        assert s.records == 0
    finally:
        s.close()


def test_torn_final_frame_is_cut_at_open(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 10))
    s.close()
    (seg,) = segments(spool_dir)
    size = seg.stat().st_size
    os.truncate(seg, size - 7)  # crash in the middle of the last frame
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    try:
        assert s.records == 9
        assert s.peek(100) == recs(0, 9)
        assert seg.stat().st_size == size - frame_size(rec(9))
        s.append(recs(9, 3))  # appends continue cleanly after the cut
        assert s.peek(100) == recs(0, 12)
    finally:
        s.close()


def test_torn_frame_header_is_cut_at_open(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 3))
    s.close()
    (seg,) = segments(spool_dir)
    with seg.open("ab") as f:
        f.write(b"\x00\x00")  # only part of the next length field made it
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    try:
        assert s.peek(100) == recs(0, 3)
    finally:
        s.close()


def test_survives_kill_during_appends(spool_dir: Path) -> None:
    """A real SIGKILL while a child process appends: every acknowledged batch is there."""
    child = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from pathlib import Path
from tests.test_spool import KEY, recs
from gateway.spool import Spool
s = Spool(Path({str(spool_dir)!r}), KEY, max_bytes=1 << 30, segment_bytes=64 * 1024)
for b in range(100000):
    s.append(recs(b * 10, 10, pad=200))
    print(b, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    acked = -1
    deadline = time.monotonic() + 15
    try:
        while acked < 60 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert acked >= 60, "child did not get going"
    s = Spool(spool_dir, KEY, max_bytes=1 << 30, segment_bytes=64 * 1024)
    try:
        n = s.records
        # Every acknowledged batch, plus possibly frames of the one in progress (not
        # acknowledged, so the caller offers it again: at-least-once), as a clean prefix.
        assert n >= (acked + 1) * 10
        got = s.peek(n)
        assert got == recs(0, n, pad=200)
    finally:
        s.close()


def test_no_plaintext_on_disk(spool: Spool) -> None:
    batch = recs(0, 50)
    spool.append(batch)
    blob = b"".join(p.read_bytes() for p in spool.dir.iterdir() if p.is_file())
    assert MARKER not in blob
    assert b"mijia-camera" not in blob
    assert batch[7].msg_id.encode() not in blob
    assert spool.peek(50) == batch


def test_tampered_frame_is_detected(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 5))
    s.close()
    (seg,) = segments(spool_dir)
    data = bytearray(seg.read_bytes())
    second = frame_size(rec(0))
    data[second + HEADER_BYTES + 3] ^= 0x01  # one bit inside frame 2's ciphertext
    seg.write_bytes(bytes(data))
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    try:
        assert s.peek(1) == recs(0, 1)
        with pytest.raises(SpoolCorrupt) as err:
            s.peek(5)
        msg = str(err.value)
        assert seg.name in msg
        assert f"offset {second}" in msg
        assert MARKER.decode() not in msg
    finally:
        s.close()


def test_swapped_frames_are_detected(spool_dir: Path) -> None:
    """The AAD binds each frame to its offset: equal-size frames cannot be reordered."""
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 2))
    s.close()
    (seg,) = segments(spool_dir)
    data = seg.read_bytes()
    size = frame_size(rec(0))
    assert len(data) == 2 * size
    seg.write_bytes(data[size:] + data[:size])
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    try:
        with pytest.raises(SpoolCorrupt, match="authentication"):
            s.peek(2)
    finally:
        s.close()


def test_corrupt_length_in_the_middle_is_not_silently_cut(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 5))
    s.close()
    (seg,) = segments(spool_dir)
    data = bytearray(seg.read_bytes())
    data[frame_size(rec(0)) : frame_size(rec(0)) + LEN.size] = LEN.pack(3)  # < tag size
    seg.write_bytes(bytes(data))
    with pytest.raises(SpoolCorrupt, match=seg.name):
        Spool(spool_dir, KEY, max_bytes=1 << 20)


def test_wrong_key_is_detected(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 1))
    s.close()
    s = Spool(spool_dir, bytes(32), max_bytes=1 << 20)
    try:
        with pytest.raises(SpoolCorrupt, match="authentication"):
            s.peek(1)
    finally:
        s.close()


def test_one_process_per_spool_dir(spool: Spool) -> None:
    with pytest.raises(SpoolError, match="in use"):
        Spool(spool.dir, KEY, max_bytes=1 << 20)


def test_key_must_be_32_bytes(spool_dir: Path) -> None:
    with pytest.raises(ValueError):
        Spool(spool_dir, b"short", max_bytes=1 << 20)


def test_consumed_segment_left_by_a_crash_is_removed(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20, segment_bytes=500)
    s.append(recs(0, 20))
    first = segments(spool_dir)[0]
    saved = first.read_bytes()
    per_segment = 500 // frame_size(rec(0))
    s.commit(per_segment)  # consumes exactly the first segment
    s.close()
    assert not first.exists()
    first.write_bytes(saved)  # as if the crash came before the unlink
    s = Spool(spool_dir, KEY, max_bytes=1 << 20, segment_bytes=500)
    try:
        assert not first.exists()
        assert s.peek(100) == recs(per_segment, 20 - per_segment)
    finally:
        s.close()


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 12), st.integers(0, 300)),
        st.tuples(st.just("commit"), st.integers(0, 15), st.just(0)),
        st.tuples(st.just("reopen"), st.just(0), st.just(0)),
    ),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops)
def test_behaves_like_a_bounded_fifo(tmp_path: Path, ops: list[tuple[str, int, int]]) -> None:
    d = tmp_path / f"model-{time.monotonic_ns()}"
    bound = 6000
    s = Spool(d, KEY, max_bytes=bound, segment_bytes=700)
    model: list[OutRecord] = []
    counter = 0
    try:
        for op, n, pad in ops:
            if op == "append":
                batch = recs(counter, n, pad)
                counter += n
                try:
                    s.append(batch)
                    model.extend(batch)
                except SpoolFull:
                    pass
            elif op == "commit":
                k = min(n, len(model))
                s.commit(k)
                del model[:k]
            else:
                s.close()
                s = Spool(d, KEY, max_bytes=bound, segment_bytes=700)
            assert s.records == len(model)
            assert s.bytes == sum(frame_size(r) for r in model)
            assert s.disk_bytes <= bound
            assert s.peek(len(model) + 1) == model
    finally:
        s.close()
