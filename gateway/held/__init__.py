"""Held records: enforced, but no sink may receive them yet (see README.md)."""

from gateway.held.config import HeldConfig
from gateway.held.store import HeldStore

__all__ = ["HeldConfig", "HeldStore"]
