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
from gateway.spool import Spool, SpoolError, SpoolFull
from gateway.spool.frames import HEADER_BYTES, LEN, TAG_BYTES

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
        assert s.damage["torn_tail"] == 1  # counted: a crash mid-append, or damage
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


def quarantined(d: Path) -> list[Path]:
    q = d / "quarantine"
    return sorted(q.iterdir()) if q.is_dir() else []


def test_tampered_frame_is_quarantined_and_the_rest_reads_on(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 5))
    s.close()
    (seg,) = segments(spool_dir)
    data = bytearray(seg.read_bytes())
    size = frame_size(rec(0))
    data[size + HEADER_BYTES + 3] ^= 0x01  # one bit inside frame 2's ciphertext
    seg.write_bytes(bytes(data))
    damage: list[str] = []
    s = Spool(spool_dir, KEY, max_bytes=1 << 20, on_damage=damage.append)
    try:
        assert s.records == 5  # lengths are intact: found when read
        assert s.peek(1) == recs(0, 1)
        assert s.peek(5) == [rec(0), *recs(2, 3)]
        assert s.records == 4
        assert damage == ["frame"] and s.damage["frame"] == 1
        (q,) = quarantined(spool_dir)
        assert q.name == f"{seg.name}.{size}-{2 * size}"
        assert q.read_bytes() == bytes(data[size : 2 * size])  # moved aside, still encrypted
        assert MARKER not in q.read_bytes()
        logged = caplog.text
        assert seg.name in logged and f"{size}-{2 * size}" in logged
        assert MARKER.decode() not in logged
        s.append(recs(5, 2))  # new traffic flows behind it
        assert s.peek(10) == [rec(0), *recs(2, 5)]
        s.commit(6)
        assert s.records == 0 and segments(spool_dir) == []
    finally:
        s.close()


def test_quarantine_is_counted_once_across_reopens(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 3))
    s.close()
    (seg,) = segments(spool_dir)
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0x01  # the last frame's tag
    seg.write_bytes(bytes(data))
    counts = []
    for _ in range(3):
        s = Spool(spool_dir, KEY, max_bytes=1 << 20)
        try:
            assert s.peek(10) == recs(0, 2)
            counts.append(s.damage["frame"])
        finally:
            s.close()
    assert counts == [1, 0, 0]  # found again after a restart, not counted again
    assert len(quarantined(spool_dir)) == 1


def test_swapped_frames_are_quarantined(spool_dir: Path) -> None:
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
        assert s.peek(2) == []
        assert s.damage["frame"] == 1
        assert s.records == 0
    finally:
        s.close()


def test_damaged_length_in_the_middle_is_quarantined_at_open(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 5))
    s.close()
    (seg,) = segments(spool_dir)
    data = bytearray(seg.read_bytes())
    size = frame_size(rec(0))
    data[size : size + LEN.size] = LEN.pack(3)  # < tag size
    seg.write_bytes(bytes(data))
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    try:
        assert s.damage["length"] == 1
        assert s.records == 4
        assert s.peek(10) == [rec(0), *recs(2, 3)]
        (q,) = quarantined(spool_dir)
        assert q.name == f"{seg.name}.{size}-{2 * size}"
    finally:
        s.close()


def test_length_damaged_to_a_plausible_value_is_resynchronised(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 6))
    s.close()
    (seg,) = segments(spool_dir)
    data = bytearray(seg.read_bytes())
    size = frame_size(rec(0))
    (clen,) = LEN.unpack_from(data, size)
    data[size : size + LEN.size] = LEN.pack(clen + 37)  # lands inside the next frame
    seg.write_bytes(bytes(data))
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    try:
        assert s.peek(10) == [rec(0), *recs(2, 4)]  # only the damaged frame is lost
        assert s.records == 5
        s.commit(5)
        assert s.records == 0
    finally:
        s.close()


def test_wrong_key_quarantines_everything_instead_of_blocking(spool_dir: Path) -> None:
    s = Spool(spool_dir, KEY, max_bytes=1 << 20)
    s.append(recs(0, 3))
    s.close()
    (seg,) = segments(spool_dir)
    whole = seg.read_bytes()
    s = Spool(spool_dir, bytes(32), max_bytes=1 << 20)
    try:
        assert s.peek(3) == []
        assert s.records == 0
        assert s.damage["frame"] == 1  # one range: the whole segment
        (q,) = quarantined(spool_dir)
        assert q.read_bytes() == whole  # recoverable with the right key
    finally:
        s.close()


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"\x00garbage{", id="unreadable"),
        pytest.param(b'{"v":1,"segment":99,"offset":0}', id="segment-beyond-the-newest"),
        pytest.param(b'{"v":1,"segment":1,"offset":5}', id="not-a-frame-boundary"),
        pytest.param(b'{"v":1,"segment":1,"offset":999999}', id="past-the-end"),
        pytest.param(b'{"v":7,"segment":1,"offset":0}', id="invalid-values"),
    ],
)
def test_damaged_head_file_restarts_at_the_oldest_segment(spool_dir: Path, head: bytes) -> None:
    """Duplicates, never loss: nothing is deleted, and reading starts from the oldest frame."""
    s = Spool(spool_dir, KEY, max_bytes=1 << 20, segment_bytes=500)
    s.append(recs(0, 20))
    s.commit(1)  # a head inside the first segment
    s.close()
    before = segments(spool_dir)
    (spool_dir / "head").write_bytes(head)
    s = Spool(spool_dir, KEY, max_bytes=1 << 20, segment_bytes=500)
    try:
        assert s.damage["head"] == 1
        assert segments(spool_dir) == before
        assert s.peek(100) == recs(0, 20)
        assert any(p.name.startswith("head.") for p in quarantined(spool_dir))
        s.commit(20)
        assert s.records == 0
    finally:
        s.close()
    s = Spool(spool_dir, KEY, max_bytes=1 << 20, segment_bytes=500)
    try:
        assert s.records == 0 and s.damage["head"] == 0
    finally:
        s.close()


def test_truncated_older_segment_is_quarantined(spool_dir: Path) -> None:
    per_segment = 500 // frame_size(rec(0))
    s = Spool(spool_dir, KEY, max_bytes=1 << 20, segment_bytes=500)
    s.append(recs(0, 3 * per_segment))
    s.close()
    _first, second, _third = segments(spool_dir)
    os.truncate(second, second.stat().st_size - 5)  # the last frame of an older segment
    s = Spool(spool_dir, KEY, max_bytes=1 << 20, segment_bytes=500)
    try:
        assert s.damage["segment"] == 1
        lost = 2 * per_segment - 1
        assert s.peek(100) == [r for i, r in enumerate(recs(0, 3 * per_segment)) if i != lost]
        s.commit(s.records)
        assert segments(spool_dir) == []
    finally:
        s.close()


def test_damage_found_while_open_is_quarantined(spool: Spool) -> None:
    spool.append(recs(0, 4))
    (seg,) = segments(spool.dir)
    size = frame_size(rec(0))
    with seg.open("r+b") as f:  # bit rot after open
        f.seek(2 * size + HEADER_BYTES + 1)
        b = f.read(1)
        f.seek(2 * size + HEADER_BYTES + 1)
        f.write(bytes([b[0] ^ 0x40]))
    assert spool.peek(10) == [*recs(0, 2), rec(3)]
    assert spool.damage["frame"] == 1
    spool.commit(3)
    assert spool.records == 0


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


_damage_ops = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 10**6)),
        st.tuples(st.just("truncate"), st.integers(0, 10**6), st.integers(0, 10**6)),
        st.tuples(st.just("head"), st.integers(0, 10**6), st.integers(0, 10**6)),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_damage_ops, consumed=st.integers(0, 12))
@pytest.mark.timeout(120)
def test_any_damage_opens_and_reads_an_ordered_subset(
    tmp_path: Path, ops: list[tuple[str, int, int]], consumed: int
) -> None:
    """Whatever is flipped or cut: open never fails, what is read is a subsequence of what
    was written (in order, nothing invented), and the spool goes on working."""
    d = tmp_path / f"damage-{time.monotonic_ns()}"
    written = recs(0, 30, pad=40)
    s = Spool(d, KEY, max_bytes=1 << 20, segment_bytes=1500)
    s.append(written)
    s.commit(consumed)
    s.close()
    for op, a, b in ops:
        segs = segments(d)
        if op == "head" or not segs:
            (d / "head").write_bytes(bytes([a % 256, b % 256]) * (a % 9))
            continue
        seg = segs[a % len(segs)]
        data = bytearray(seg.read_bytes())
        if not data:
            continue
        if op == "flip":
            data[b % len(data)] ^= 1 << (a % 8)
        else:
            del data[b % len(data) :]
        seg.write_bytes(bytes(data))
    s = Spool(d, KEY, max_bytes=1 << 20, segment_bytes=1500)
    try:
        got = s.peek(100)
        it = iter(written)
        assert all(any(r == w for w in it) for r in got), "not an ordered subset"
        assert s.records == len(got)
        s.commit(len(got))
        assert s.records == 0
        s.append(recs(100, 3))
        assert s.peek(10) == recs(100, 3)
    finally:
        s.close()
