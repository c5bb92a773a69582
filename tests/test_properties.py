"""Property tests of the engine over generated payloads (test policy `purifier`).

For any payload: the engine never raises; a Record carries only declared, forwarded leaf paths
of its kind (consent-gated ones only with the toggle on); and no raw identifier value (MAC,
uid, SSID, BSSID, token, device id, all drawn distinctive) appears in the encoded output.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from gateway.consent.state import ConsentState
from gateway.consent.store import ConsentStore
from gateway.decode.plan import Leaf, Node, Plan
from gateway.engine import Engine
from gateway.envelope import Held, Outcome, Record, Rejection, encode
from gateway.policy.loader import load_dir
from gateway.policy.model import IDENTIFIERS, Field
from gateway.route.router import Router
from gateway.transforms.pseudonymize import KeyRing

TEST_POLICIES = Path(__file__).resolve().parent / "data" / "policies"
PID = "purifier"
TOGGLE = "user_experience"
REASONS = frozenset(
    {
        "bad_topic",
        "unknown_product",
        "undeclared_kind",
        "consent_withdrawn",
        "too_large",
        "invalid_utf8",
        "invalid_json",
        "too_deep",
        "not_object",
        "duplicate_key",
        "type_error",
        "method_not_allowed",
        "no_consent",
        "nothing_declared",
    }
)

CONSENT = ConsentStore()
ENGINE = Engine(load_dir(TEST_POLICIES), KeyRing(bytes(range(32))), Router("de"), consent=CONSENT)
PLANS: dict[str, Plan] = dict(ENGINE.products[PID].plans)
KINDS = sorted(PLANS)

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies ---------------------------------------------------------------------------------

# Distinctive identifiers contain "QZ"; arbitrary text never contains a "Q", so a distinctive
# value can only reach the output by leaking.
MARK = "QZ"
_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
distinctive = st.text(_ID_ALPHABET, min_size=16, max_size=24).map(lambda s: f"{MARK}{s}{MARK}")
# 19+ digits: longer than any float repr's digit run and than any arbitrary int below.
big_uid = st.integers(min_value=10**18, max_value=2**63 - 1)
_hex_byte = st.integers(0, 255)
mac_shaped = st.builds(
    lambda bs, sep, upper: sep.join(f"{b:02X}" if upper else f"{b:02x}" for b in bs),
    st.lists(_hex_byte, min_size=4, max_size=4).map(lambda bs: [0xA4, 0xC1, *bs]),
    st.sampled_from([":", "-"]),
    st.booleans(),
)

arb_text = st.text(st.characters(codec="utf-8", exclude_characters="Q"), max_size=24)
arb_key = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="Q"), max_size=12),
    st.sampled_from(["mac", "uid", "token", "ssid", "bssid", "model", "ap", "params", "did"]),
)
arb_scalar: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**17), max_value=10**17),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
    arb_text,
)
arb_json: st.SearchStrategy[Any] = st.recursive(
    arb_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(arb_key, inner, max_size=4)
    ),
    max_leaves=12,
)
# Positions as devices send them: 7 decimal places, sometimes integers.
position = st.one_of(
    st.integers(-1_800_000_000, 1_800_000_000).map(lambda n: n / 1e7),
    st.integers(-180, 180),
)
ip_text = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["8.8.8.8", "192.168.1.2", "fe80::1a2b:3cff:fe4d:5e6f", "10.0.0.1"]),
    arb_text,
)


def _identifier(data: st.DataObject, category: str, ids: list[str]) -> Any:
    if category == "device.mac":
        v: Any = data.draw(st.one_of(mac_shaped, distinctive))
    elif category == "account.id":
        v = data.draw(st.one_of(distinctive, big_uid, big_uid.map(str)))
    else:
        v = data.draw(distinctive)
    ids.append(str(v))
    return v


def _leaf_value(data: st.DataObject, leaf: Leaf, ids: list[str]) -> Any:
    f = leaf.field
    if data.draw(st.integers(0, 19)) == 0:  # sometimes anything, wrong types included
        return data.draw(arb_json)
    if f.category in IDENTIFIERS or f.category.startswith("secret."):
        return _identifier(data, f.category, ids)
    if f.category in ("network.ip", "network.gateway"):
        return data.draw(ip_text)
    if f.category == "location.precise":
        return data.draw(position)
    by_type: dict[str, st.SearchStrategy[Any]] = {
        "str": arb_text,
        "int": st.integers(min_value=-(10**17), max_value=10**17),
        "float": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
            st.integers(-1000, 1000),
        ),
        "bool": st.booleans(),
        "id": st.one_of(arb_text, st.integers(min_value=-(10**17), max_value=10**17)),
    }
    return data.draw(by_type[f.type])


def _message(data: st.DataObject, kind: str, ids: list[str]) -> dict[str, Any]:
    """A payload for one of the kind's shapes: with its method's name and params where the
    kind carries methods (positional params as the list devices send)."""
    plan = PLANS[kind]
    if plan.shape is not None:
        return _payload(data, plan.shape.root, ids)
    name = data.draw(st.sampled_from(sorted(plan.methods)))
    out = _payload(data, plan.methods[name].root, ids)
    if data.draw(st.integers(0, 9)) > 0:
        out["method"] = name
    params = out.get("params")
    if isinstance(params, dict) and all(k.isdigit() for k in params):
        out["params"] = [params.get(str(i)) for i in range(len(params))]
    return out


def _payload(data: st.DataObject, node: Node, ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for leaf in node.leaves:
        if data.draw(st.integers(0, 3)) > 0:
            out[leaf.name] = _leaf_value(data, leaf, ids)
    for sub in node.nodes:
        if data.draw(st.integers(0, 3)) > 0:
            if sub.is_list:
                n = data.draw(st.integers(0, 3))
                out[sub.name] = [_payload(data, sub, ids) for _ in range(n)]
            else:
                out[sub.name] = _payload(data, sub, ids)
    extra: dict[str, Any] = data.draw(st.dictionaries(arb_key, arb_json, max_size=4))
    if data.draw(st.booleans()):
        extra.update(out)  # declared keys win
        return extra
    out.update(extra)  # arbitrary values may overwrite declared keys
    return out


# -- what may leave -----------------------------------------------------------------------------


# The oracle reads the policy file itself, not the compiled plan the engine runs. A method's
# positional params leave as one list, at `params`.
FIELDS: dict[str, dict[str, Field]] = {
    kind: {f.path: f for f in rule.fields}
    | {("params" if f.path[-1].isdigit() else f.path): f for m in rule.methods for f in m.params}
    for kind, rule in ENGINE.products[PID].loaded.policy.kinds.items()
}
PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")
LAA_UNICAST = re.compile(r"^[0-9a-f][26ae](:[0-9a-f]{2}){5}$")


def _allowed(kind: str, state: ConsentState | None) -> frozenset[str]:
    """Paths the file declares forwarded (not drop, not a secret), consent permitting."""
    return frozenset(
        path
        for path, f in FIELDS[kind].items()
        if f.action != "drop"
        and not f.category.startswith("secret.")
        and (f.consent is None or (state is not None and f.consent in state.toggles))
    )


def leaf_values(obj: dict[str, Any], leaves: frozenset[str], prefix: str = "") -> list[Any]:
    """(wire path, value) of every value in `obj`, with `[]` for list items and declared leaves
    taken whole (a coarsened IP is a {country, continent} object at a leaf path)."""
    out: list[Any] = []
    for key, value in obj.items():
        path = prefix + key
        if path in leaves:
            out.append((path, value))
        elif isinstance(value, dict):
            if not value:
                out.append((path + "{}", value))  # an empty block should not be there at all
            out += leaf_values(value, leaves, path + ".")
        elif isinstance(value, list) and all(isinstance(x, dict) for x in value):
            for item in value:
                out += leaf_values(item, leaves, path + "[].")
        else:
            out.append((path, value))
    return out


def _pseudonym_ok(category: str, x: Any) -> bool:
    if not isinstance(x, str):
        return False
    if category == "device.mac" and LAA_UNICAST.match(x):
        return True
    return PSEUDONYM.match(x) is not None


def _value_ok(f: Field, v: Any) -> bool:
    """The shape each action leaves a value in."""
    if f.category in IDENTIFIERS:
        return _pseudonym_ok(f.category, v)
    if f.category in ("network.ip", "network.gateway"):
        return isinstance(v, dict) and bool(v) and set(v) <= {"country", "continent"}
    if f.category == "location.precise":
        return isinstance(v, float) and round(v, f.precision) == v
    return True


def _check(outcome: Outcome, kind: str, state: ConsentState | None, ids: list[str]) -> None:
    encoded = encode(outcome)
    for raw in ids:
        assert raw.encode() not in encoded, raw
        assert raw.lower().encode() not in encoded, raw
    if isinstance(outcome, Rejection):
        assert outcome.reason in REASONS
        return
    rec = outcome.record if isinstance(outcome, Held) else outcome
    assert isinstance(rec, Record)
    assert PSEUDONYM.match(rec.device)
    fields = FIELDS[kind]
    allowed = _allowed(kind, state)
    for path, value in leaf_values(rec.data, frozenset(fields)):
        assert path in allowed, (path, sorted(allowed))
        assert _value_ok(fields[path], value), (path, value)


def _consent(data: st.DataObject, device: str) -> ConsentState | None:
    choice = data.draw(st.sampled_from(["none", "off", "on", "withdrawn"]))
    if choice == "none":
        return None
    state = ConsentState(
        withdrawn=choice == "withdrawn",
        toggles=frozenset({TOGGLE}) if choice in ("on", "withdrawn") else frozenset(),
    )
    CONSENT.set(PID, device, state)
    return state


# -- properties ---------------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_generated_payloads(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(KINDS))
    device = data.draw(distinctive)
    ids = [device]
    _consent(data, device)
    # The oracle judges by the state the engine sees: a device id drawn again keeps the
    # state an earlier example stored for it.
    state = CONSENT.get(PID, device)
    payload = _message(data, kind, ids)
    raw = msgspec.json.encode(payload)
    if data.draw(st.integers(0, 4)) == 0:  # sometimes damage it
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        raw = raw[:pos] + data.draw(st.binary(max_size=3)) + raw[pos + 1 :]
    outcome = ENGINE.process(f"miot/{PID}/{device}/{kind}", raw, 1_700_000_000.0)
    _check(outcome, kind, state, ids)


def test_generator_reaches_records() -> None:
    """The generator is not vacuous: undamaged payloads without consent state mostly become
    Records, and they satisfy the same properties."""
    seen: Counter[str] = Counter()

    @settings(max_examples=100, deadline=None, database=None)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(KINDS))
        # Its own device ids: other tests leave consent states (some withdrawn) in CONSENT
        # for the small ids Hypothesis likes to draw.
        device = "reach" + data.draw(distinctive)
        ids = [device]
        payload = _message(data, kind, ids)
        outcome = ENGINE.process(
            f"miot/{PID}/{device}/{kind}", msgspec.json.encode(payload), 1_700_000_000.0
        )
        _check(outcome, kind, CONSENT.get(PID, device), ids)
        seen[type(outcome).__name__] += 1
        if isinstance(outcome, Record) and outcome.data:
            seen["non-empty"] += 1

    run()
    assert seen["Record"] >= 20, seen
    assert seen["non-empty"] >= 10, seen


@SETTINGS
@given(
    kind=st.sampled_from([*KINDS, "event", "telemetry"]),
    device=distinctive,
    raw=st.one_of(
        st.binary(max_size=512),
        st.binary(max_size=64).map(lambda b: b"{" + b + b"}"),
        st.text(string.printable, max_size=200).map(str.encode),
    ),
)
def test_random_bytes_never_raise(kind: str, device: str, raw: bytes) -> None:
    outcome = ENGINE.process(f"miot/{PID}/{device}/{kind}", raw, 0.0)
    if kind in PLANS:
        _check(outcome, kind, CONSENT.get(PID, device), [device])
    else:
        assert isinstance(outcome, Rejection)
        assert outcome.reason == "undeclared_kind"


@SETTINGS
@given(topic=st.text(max_size=80), raw=st.binary(max_size=64))
def test_random_topics_never_raise(topic: str, raw: bytes) -> None:
    outcome = ENGINE.process(topic, raw, 0.0)
    encode(outcome)
    if isinstance(outcome, Rejection):
        assert outcome.reason in REASONS


ident_key = st.one_of(distinctive, mac_shaped, mac_shaped.map(lambda m: "tasmota_" + m[-8:]))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_identifiers_in_keys_and_values_never_reach_metrics_or_logs(
    data: st.DataObject, caplog: Any
) -> None:
    """Keys and values carrying identifiers (a map keyed by MAC, a hostname with a MAC tail)
    are counted, but nothing of them is in a metric label or a log line."""
    caplog.set_level(logging.DEBUG)
    kind = data.draw(st.sampled_from(KINDS))
    device = "keys" + data.draw(distinctive)
    ids = [device]
    payload = _message(data, kind, ids)
    for _ in range(data.draw(st.integers(1, 4))):
        key = data.draw(ident_key)
        value = data.draw(st.one_of(distinctive, mac_shaped))
        ids += [key, value]
        target = payload
        if data.draw(st.booleans()) and isinstance(payload.get("ap"), dict):
            target = payload["ap"]
        target[key] = {key: value} if data.draw(st.booleans()) else value
    ENGINE.process(f"miot/{PID}/{device}/{kind}", msgspec.json.encode(payload), 1.7e9)
    exposed = generate_latest(ENGINE.events.registry).decode() + caplog.text
    for raw in ids:
        for form in (raw, raw.lower(), raw.replace(":", "").replace("-", "").lower()):
            assert form not in exposed.lower(), form
