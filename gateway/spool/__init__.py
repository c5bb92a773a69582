"""Bounded, durable, AES-GCM encrypted local spool a sink falls back to when down."""

from gateway.spool.config import SpoolConfig
from gateway.spool.spool import DAMAGE_KINDS, Spool, SpoolCorrupt, SpoolError, SpoolFull

__all__ = ["DAMAGE_KINDS", "Spool", "SpoolConfig", "SpoolCorrupt", "SpoolError", "SpoolFull"]
