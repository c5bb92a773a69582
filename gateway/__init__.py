"""privacy-gateway: forwards only what each product's privacy policy declares.

The public API, for embedding the enforcement in another program:

    from gateway import Engine, KeyRing, Router, load_dir
    engine = Engine(load_dir(), KeyRing(master_key), Router("de"))
    outcome = engine.process("miot/mi-home/123/info", payload, time.time())
    # -> Record (forward it), Held (region not named by the policy) or Rejection

The names are imported on first use: `python -m gateway` and the `gateway` script must be
able to install their signal handlers before anything heavy is imported
(gateway/signals.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.engine import Engine
    from gateway.envelope import Held, Record, Rejection, encode
    from gateway.internal_events import Events
    from gateway.policy.loader import LoadedPolicy, PolicyError, load_dir
    from gateway.route.router import Router
    from gateway.route.topics import TopicScheme
    from gateway.transforms.pseudonymize import KeyRing

_EXPORTS = {
    "Engine": "gateway.engine",
    "Events": "gateway.internal_events",
    "Held": "gateway.envelope",
    "KeyRing": "gateway.transforms.pseudonymize",
    "LoadedPolicy": "gateway.policy.loader",
    "PolicyError": "gateway.policy.loader",
    "Record": "gateway.envelope",
    "Rejection": "gateway.envelope",
    "Router": "gateway.route.router",
    "TopicScheme": "gateway.route.topics",
    "encode": "gateway.envelope",
    "load_dir": "gateway.policy.loader",
}

__all__ = [
    "Engine",
    "Events",
    "Held",
    "KeyRing",
    "LoadedPolicy",
    "PolicyError",
    "Record",
    "Rejection",
    "Router",
    "TopicScheme",
    "encode",
    "load_dir",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
