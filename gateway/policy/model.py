"""The policy file format: one TOML file per product, decoded into these Structs.

A policy says, per message kind, which wire fields the product may send upstream,
what each one is, why it is collected, what the gateway does to it, and which clause
of the published privacy policy it rests on. Everything not declared is dropped.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

Action = Literal["keep", "pseudonymize", "coarsen", "aggregate", "drop"]
Kind = Literal["info", "props", "event", "command"]
KINDS: tuple[Kind, ...] = ("info", "props", "event", "command")

# Wire types a field may declare. "id" accepts an int or a string (miIO sends `uid`
# both ways) and is normalised to a string, so a pseudonym does not depend on it. There is no
# free list type: miIO RPC `params` lists are declared per method, item by item.
FieldType = Literal["str", "int", "float", "bool", "id"]
Example = str | int | float | bool

# Closed vocabulary: a reviewer can grep every policy for one category.
CATEGORIES: frozenset[str] = frozenset(
    {
        "device.id",
        "device.model",
        "device.mac",
        "device.firmware",
        "device.hardware",
        "device.uptime",
        "device.state",
        "device.settings",
        "device.error",
        "account.id",
        "network.ip",
        "network.gateway",
        "network.netmask",
        "network.ssid",
        "network.bssid",
        "network.rssi",
        "location.precise",
        "usage.event",
        "usage.command",
        "free_text",
        "secret.token",
        "secret.password",
        "secret.credential",
    }
)

# Categories that identify a person or a home: they never leave as they are.
IDENTIFIERS: frozenset[str] = frozenset(
    {"device.id", "device.mac", "account.id", "network.ssid", "network.bssid"}
)
# Categories that only leave coarsened (IPs as country + continent, positions rounded).
COARSEN_ONLY: frozenset[str] = frozenset({"network.ip", "network.gateway", "location.precise"})
# Categories that may leave only as statistics over devices (IP -> devices per country).
AGGREGATE_ONLY: frozenset[str] = frozenset({"network.ip"})

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[\])?)*$")
# Positional miIO RPC arguments of a method: `params.0`, `params.1`, ...
_POSITIONAL = re.compile(r"^params\.(0|[1-9][0-9]?)$")
_TOGGLE = re.compile(r"^[a-z][a-z0-9_]*$")
REGIONS: frozenset[str] = frozenset({"cn", "us", "sg", "fr", "de", "in", "ru"})
Days = Annotated[int, msgspec.Meta(ge=1)]


class Field(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One declared wire field. `path` is dotted; `[]` marks a list of objects."""

    path: str
    type: FieldType
    category: str
    action: Action
    purpose: str
    cite: str
    # Consent toggle that must be on for this field to leave (opt-in).
    consent: str | None = None
    # Free text: identifiers found in it are replaced by a tag instead of dropping the field.
    text: bool = False
    # Decimal places kept when coarsening a position.
    precision: int = 1
    # The value domain of a kept field, compiled into the decoder's types (msgspec Meta): a
    # value outside it drops the field, never the message. Strings: `enum` or an anchored
    # `pattern`, and `max_length`; numbers: `min` and `max`.
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    max_length: int | None = None
    min: int | float | None = None
    max: int | float | None = None
    # Values real devices send, checked against the domain by `gateway check`.
    examples: tuple[Example, ...] = ()


class Method(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One miIO RPC method a kind may carry, with its own `params`: positional items
    (`params.0`, `params.1`) or object fields (`params.power`), each with its type and domain."""

    name: str
    purpose: str
    cite: str
    params: tuple[Field, ...] = ()
    # A toggle that must be on for any message of this method to leave.
    consent: str | None = None


class KindRule(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    purpose: str
    cite: str
    fields: tuple[Field, ...] = ()
    # Allowed values of `method`, each with its params; empty: the kind carries no RPC method.
    methods: tuple[Method, ...] = ()
    # A toggle that must be on for any message of this kind to leave.
    consent: str | None = None
    # Days the gateway keeps what it stores of this kind; None = the product's.
    retention_days: Days | None = None


class Region(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    datacentre: str
    cite: str


class Toggle(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    description: str
    cite: str


class Policy(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    name: str
    publisher: str
    seed: str
    regions: tuple[Region, ...]
    kinds: dict[Kind, KindRule]
    models: tuple[str, ...] = ()
    toggles: tuple[Toggle, ...] = ()
    # Withdrawal of consent stops all forwarding for the device; cite where the policy says so.
    withdrawal_cite: str = ""
    # Where the text promises that withdrawal deletes the data: the gateway erases.
    erasure_cite: str = ""
    # `aggregate` fields: distinct devices are counted per window of this many seconds, and a
    # count under `k_anonymity` is never emitted.
    aggregate_window_s: int = 3600
    k_anonymity: int = 10

    # Days the gateway keeps what it stores itself (file sink, held, spool); None = the
    # deployment's [retention] default_days.
    retention_days: Days | None = None

    def retention(self, kind: str) -> int | None:
        rule = self.kinds.get(kind)  # type: ignore[call-overload]
        days = rule.retention_days if rule is not None else None
        return days if days is not None else self.retention_days


def path_ok(path: str) -> bool:
    return _PATH.match(path) is not None


def positional_ok(path: str) -> bool:
    return _POSITIONAL.match(path) is not None


def toggle_ok(name: str) -> bool:
    return _TOGGLE.match(name) is not None
