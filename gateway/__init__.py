"""privacy-gateway: forwards only what each product's privacy policy declares.

The public API, for embedding the enforcement in another program:

    from gateway import Engine, KeyRing, Router, load_dir
    engine = Engine(load_dir(), KeyRing(master_key), Router("de"))
    outcome = engine.process("miot/mi-home/123/info", payload, time.time())
    # -> Record (forward it), Held (region not named by the policy) or Rejection
"""

from gateway.engine import Engine
from gateway.envelope import Held, Record, Rejection, encode
from gateway.internal_events import Events
from gateway.policy.loader import LoadedPolicy, PolicyError, load_dir
from gateway.route.router import Router
from gateway.route.topics import TopicScheme
from gateway.transforms.pseudonymize import KeyRing

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
