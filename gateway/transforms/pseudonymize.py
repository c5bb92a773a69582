"""Keyed pseudonyms: HMAC-SHA256 under a per-product key derived with HKDF from one master key.

Stable within a product (the same device always maps to the same pseudonym, so the cloud can
still count and correlate), unlinkable across products (different keys), and rotatable: the
key id names the epoch, and a new epoch yields unrelated pseudonyms.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASTER_KEY_ENV = "GATEWAY_MASTER_KEY"
MEMO_SIZE = 65536
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")


class KeyError_(Exception):
    """The master key is missing or malformed (the message never contains key material)."""


def derive(master: bytes, purpose: str, length: int = 32) -> bytes:
    """One HKDF expansion per purpose, so no two uses of the master key share a key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode())
    return hkdf.derive(master)


def parse_master(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise KeyError_("master key must be hex") from None
    if len(key) < 32:
        raise KeyError_("master key must be at least 32 bytes (64 hex digits)")
    return key


@dataclass(frozen=True, slots=True)
class Pseudonymizer:
    """The pseudonym function of one product at one key epoch."""

    product: str
    epoch: int
    key: bytes = field(repr=False)
    # A fleet repeats the same few identifiers in every message: remember their pseudonyms
    # (bounded; cleared whole when full) instead of paying one HMAC per field per message.
    _memo: dict[tuple[str, str], str] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )

    @property
    def key_id(self) -> str:
        return f"{self.product}/{self.epoch}"

    def pseudonym(self, category: str, value: str) -> str:
        # The category separates domains: a MAC and a device id that happen to be equal
        # strings still map to different pseudonyms.
        memo = self._memo
        out = memo.get((category, value))
        if out is None:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            msg = f"{category}\x00{value}".encode()
            out = memo[category, value] = hmac.digest(self.key, msg, "sha256")[:16].hex()
        return out

    def mac(self, value: str) -> str:
        """Format-preserving: a locally administered unicast MAC, so MAC-shaped parsers keep
        working and nobody mistakes it for a vendor address. A value that is not MAC-shaped
        gets an ordinary pseudonym."""
        memo = self._memo
        out = memo.get(("mac", value))
        if out is None:
            if _MAC.match(value) is None:
                return self.pseudonym("device.mac", value)
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            canonical = value.replace("-", ":").lower().encode()
            d = bytearray(hmac.digest(self.key, b"device.mac\x00" + canonical, "sha256")[:6])
            d[0] = (d[0] | 0x02) & 0xFE
            out = memo["mac", value] = ":".join(f"{b:02x}" for b in d)
        return out


class KeyRing:
    """Per-product pseudonymizers derived once from the master key."""

    def __init__(self, master: bytes, epoch: int = 1) -> None:
        if len(master) < 32:
            raise KeyError_("master key must be at least 32 bytes")
        self._master = master
        self.epoch = epoch
        self._cache: dict[str, Pseudonymizer] = {}

    def for_product(self, product: str) -> Pseudonymizer:
        p = self._cache.get(product)
        if p is None:
            key = derive(self._master, f"privacy-gateway/v1/pseudonym/{product}/{self.epoch}")
            p = self._cache[product] = Pseudonymizer(product, self.epoch, key)
        return p

    def derive(self, purpose: str) -> bytes:
        return derive(self._master, f"privacy-gateway/v1/{purpose}")
