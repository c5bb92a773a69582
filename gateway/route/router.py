"""Which data-residency region a device's records go to.

Order: the device registry (operator's file), a region captured from the topic, the
deployment default. The engine then checks the region against the product's policy: a region
the policy does not name is never a destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import msgspec

from gateway.policy.model import REGIONS


class RegistryError(Exception):
    pass


class Router:
    def __init__(self, default: str | None = None, registry: Mapping[str, str] | None = None):
        if default is not None and default not in REGIONS:
            raise RegistryError(f"default region {default!r} is not one of {sorted(REGIONS)}")
        self.default = default
        self.registry = dict(registry or {})

    def region(self, device: str, topic_region: str | None) -> str | None:
        """None when undecidable: the record is then held, never sent."""
        if device in self.registry:
            return self.registry[device]
        if topic_region:  # an empty segment says nothing
            # A region captured from the topic is the device's word: an unknown one is not
            # replaced by the default (that would move data where nobody said it belongs).
            return topic_region if topic_region in REGIONS else None
        return self.default


def load_registry(path: Path) -> dict[str, str]:
    """A TOML table `[devices]` mapping device id -> region id. Errors name the line of the
    file, never a device id."""
    try:
        doc = msgspec.toml.decode(path.read_bytes(), type=dict[str, dict[str, str]])
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
    except msgspec.DecodeError as exc:
        raise RegistryError(f"{path}: {exc}") from None
    except msgspec.ValidationError:
        # msgspec's message ends with the key path, which would be a device id.
        raise RegistryError(f"{path}: expected [devices] with string region ids") from None
    devices = doc.get("devices", {})
    bad = sorted({r for r in devices.values() if r not in REGIONS})
    if bad:
        raise RegistryError(f"{path}: unknown region ids {bad}; known: {sorted(REGIONS)}")
    return devices
