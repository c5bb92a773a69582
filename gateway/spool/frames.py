"""The spool's on-disk format: segment names, the head record, and one encrypted frame.

Kept apart from the spool's operations and its recovery, which both read and write it: the
format is what must never change silently (a changed AAD makes every spooled frame fail).

Frame: ``len (4 bytes, big-endian) | nonce (12 random bytes) | ciphertext`` where ``len`` is
the length of the ciphertext (msgpack-encoded record + 16-byte GCM tag). The AAD binds
every frame to its segment name and byte offset, so frames cannot be moved between or
within segments without failing authentication.

Limits of the scheme: random 96-bit nonces allow about 2**32 frames per key, and
dropping whole frames off the end of the newest segment is not detectable (there is no
authenticated tail); both are acceptable for a local outage buffer.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.sinks.base import OutRecord

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
LEN = struct.Struct(">I")
HEADER_BYTES = LEN.size + NONCE_BYTES
MAX_CIPHERTEXT = 64 * 1024 * 1024  # a larger length field can only be damage
_AAD_PREFIX = b"gateway-spool-v1\x00"
SEGMENT_RE = re.compile(r"^seg-(\d{20})\.spool$")
# A length field <= MAX_CIPHERTEXT (0x04000000) starts with a byte <= 4: where a frame may
# start again after damage.
LENGTH_START = re.compile(rb"[\x00-\x04]")
HEAD_FILE = "head"


class SpoolError(Exception):
    """The spool cannot take or give records; messages never contain record content."""


class SpoolFull(SpoolError):
    """The batch does not fit the byte bound (or the disk); nothing of it was written."""


class SpoolCorrupt(SpoolError):
    """A frame on disk is damaged or was tampered with (quarantined, not raised, by the
    public API)."""


class Head(msgspec.Struct, frozen=True):
    v: int
    segment: int
    offset: int


@dataclass
class Segment:
    seq: int
    size: int  # bytes on disk (all complete frames and quarantined ranges)
    frames: int  # complete frames in the file, consumed or not
    holes: dict[int, int] = field(default_factory=dict)  # quarantined ranges: start -> end

    @property
    def name(self) -> str:
        return segment_name(self.seq)


def segment_name(seq: int) -> str:
    return f"seg-{seq:020d}.spool"


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(OutRecord)


def encode(rec: OutRecord) -> bytes:
    """The plaintext of a frame."""
    return _encoder.encode(rec)


def frame_bytes(plain: bytes) -> int:
    """Size on disk of the frame that holds ``plain``."""
    return HEADER_BYTES + len(plain) + TAG_BYTES


def seal(aead: AESGCM, plain: bytes, segment_name: str, offset: int) -> bytes:
    """The frame for ``plain`` at ``offset`` of ``segment_name``."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    ct = aead.encrypt(nonce, plain, _aad(segment_name, offset))
    return LEN.pack(len(ct)) + nonce + ct


def frame_size(fd: int, seg: Segment, off: int) -> int:
    header = os.pread(fd, LEN.size, off)
    if len(header) != LEN.size:
        raise SpoolCorrupt(f"spool frame is truncated: {seg.name} at {off}")
    (clen,) = LEN.unpack(header)
    if not TAG_BYTES <= clen <= MAX_CIPHERTEXT or off + HEADER_BYTES + clen > seg.size:
        raise SpoolCorrupt(f"spool frame has an invalid length: {seg.name} at {off}")
    return HEADER_BYTES + int(clen)


def read_frame(aead: AESGCM, dir: Path, fd: int, seg: Segment, off: int) -> tuple[OutRecord, int]:
    """The record of the frame at ``off`` and the frame's size; ``SpoolCorrupt`` if none."""
    size = frame_size(fd, seg, off)
    raw = os.pread(fd, size, off)
    if len(raw) != size:
        raise SpoolCorrupt(f"spool frame is truncated: {seg.name} at {off}")
    nonce = raw[LEN.size : HEADER_BYTES]
    try:
        plain = aead.decrypt(nonce, raw[HEADER_BYTES:], _aad(seg.name, off))
    except InvalidTag:
        raise SpoolCorrupt(
            f"spool frame failed authentication (tampered, damaged or wrong key): "
            f"{dir / seg.name} at offset {off}"
        ) from None
    try:
        return _decoder.decode(plain), size
    except msgspec.DecodeError:
        raise SpoolCorrupt(
            f"spool frame does not hold a record: {dir / seg.name} at offset {off}"
        ) from None


def authentic(aead: AESGCM, segment_name: str, data: bytes, off: int) -> bool:
    """A complete frame that authenticates starts at ``off`` of ``data``."""
    size = frame_at(data, off)
    if size is None:
        return False
    nonce = data[off + LEN.size : off + HEADER_BYTES]
    try:
        aead.decrypt(nonce, data[off + HEADER_BYTES : off + size], _aad(segment_name, off))
    except InvalidTag:
        return False
    return True


def frame_at(data: bytes, off: int) -> int | None:
    """Size of a complete frame with a plausible length at ``off``, else None."""
    if len(data) - off < HEADER_BYTES:
        return None
    (clen,) = LEN.unpack_from(data, off)
    if not TAG_BYTES <= clen <= MAX_CIPHERTEXT or off + HEADER_BYTES + clen > len(data):
        return None
    return HEADER_BYTES + int(clen)


def torn_at(data: bytes, off: int) -> bool:
    """The file ends inside the frame at ``off`` (a header cut short, or a plausible length
    that reaches past the end)."""
    if len(data) - off < HEADER_BYTES:
        return True
    clen: int = LEN.unpack_from(data, off)[0]
    return TAG_BYTES <= clen <= MAX_CIPHERTEXT and off + HEADER_BYTES + clen > len(data)


def _aad(segment_name: str, offset: int) -> bytes:
    return _AAD_PREFIX + segment_name.encode() + struct.pack(">Q", offset)


@contextlib.contextmanager
def open_read(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)
