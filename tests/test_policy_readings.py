"""Each reading of the published texts that the shipped policies encode, checked on the wire:
through `gateway enforce` where no consent is involved, through the engine with a consent
state where it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.consent.state import ConsentState
from gateway.consent.store import ConsentStore
from gateway.engine import Engine
from gateway.envelope import Held, Record, Rejection
from gateway.policy.loader import DEFAULT_DIR, load_dir
from gateway.route.router import Router
from gateway.transforms.pseudonymize import KeyRing

PUBLIC_IP = "81.2.69.142"  # GB
INFO_BASE = {"fw_ver": "3.5.8_0041", "ap": {"rssi": -50}, "netif": {"localIp": PUBLIC_IP}}


def run_enforce(
    captures: list[dict[str, Any]], tmp_path: Path
) -> subprocess.CompletedProcess[bytes]:
    """`gateway enforce` over the captures, region `us`, a fixed key."""
    key = tmp_path / "master.key"
    key.write_text("11" * 32)
    stdin = "".join(json.dumps(c) + "\n" for c in captures).encode()
    return subprocess.run(
        [sys.executable, "-m", "gateway", "enforce", "--key-file", str(key), "--region", "us"],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=True,
    )


def enforce(captures: list[dict[str, Any]], tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run_enforce(captures, tmp_path).stdout.splitlines()]


def test_no_per_device_country_where_the_text_gives_none(tmp_path: Path) -> None:
    lines = enforce(
        [
            {"topic": f"miot/{p}/d1/info", "payload": INFO_BASE}
            for p in ("mijia-camera", "xiaofang-camera", "mi-tv-remote", "mi-home")
        ],
        tmp_path,
    )
    for line in lines:
        assert "rejected" not in line, line
        blob = json.dumps(line)
        # Cameras: statistics only; TV remote: no geographic use; Mi Home: location access off.
        assert "netif" not in line["data"], line["product"]
        assert '"GB"' not in blob and PUBLIC_IP not in blob


def test_no_key_press_stream_and_no_empty_heartbeats(tmp_path: Path) -> None:
    lines = enforce(
        [
            {
                "topic": "miot/mi-tv-remote/d1/event",
                "payload": {"method": "event.key_press", "params": ["KEY_HOME"]},
            },
            {"topic": "miot/smartmi/d1/info", "payload": {"token": "00" * 16, "life": 5}},
            {
                "topic": "miot/mi-tv-remote/d1/command",
                "payload": {"id": 1, "method": "press_key", "params": ["KEY_HOME"]},
            },
        ],
        tmp_path,
    )
    assert lines[0]["rejected"]["reason"] == "undeclared_kind"
    assert lines[1]["rejected"]["reason"] == "undeclared_kind"
    assert lines[2]["data"] == {"method": "press_key", "params": ["KEY_HOME"]}


def test_child_device_id_is_pseudonymized_and_event_params_do_not_leave(tmp_path: Path) -> None:
    sid = "lumi.158d0001a2b3c4"
    lines = enforce(
        [
            {
                "topic": "miot/mi-home/hub1/event",
                "payload": {"id": 3, "method": "event.motion", "sid": sid, "params": [sid, 1]},
            },
            {"topic": "miot/mi-home/hub1/props", "payload": {"params": {"arming": "on"}}},
        ],
        tmp_path,
    )
    data = lines[0]["data"]
    assert set(data) == {"method", "sid"}
    assert data["sid"] != sid and "158d" not in json.dumps(lines[0])
    # The alarm's arming state says when the home is empty: not forwarded.
    assert lines[1]["rejected"]["reason"] == "nothing_declared"


def _engine(states: dict[str, ConsentState]) -> Engine:
    store = ConsentStore()
    for product, state in states.items():
        store.set(product, "d1", state)
    return Engine(load_dir(DEFAULT_DIR), KeyRing(bytes(32)), Router("us"), consent=store)


@pytest.mark.parametrize(
    ("product", "toggle"),
    [("mijia-camera", "motion_detection_alarm"), ("xiaofang-camera", "home_surveillance")],
)
def test_motion_events_need_their_toggle_as_a_whole(product: str, toggle: str) -> None:
    motion = b'{"id":9,"method":"event.motion","params":[]}'
    for state in (None, ConsentState(toggles=frozenset())):
        eng = _engine({product: state} if state else {})
        out = eng.process(f"miot/{product}/d1/event", motion, 1.0)
        # Not even "motion at time T": no record at all.
        assert isinstance(out, Rejection) and out.reason == "no_consent"
        assert eng.events.outcomes[product, "event", "no_consent"] == 1
    eng = _engine({product: ConsentState(toggles=frozenset({toggle}))})
    rec = eng.process(f"miot/{product}/d1/event", motion, 1.0)
    assert isinstance(rec, Record) and rec.data == {"method": "event.motion"}


def test_mi_home_country_only_with_location_access() -> None:
    payload = json.dumps(INFO_BASE).encode()
    eng = _engine({"mi-home": ConsentState(toggles=frozenset({"location_access"}))})
    rec = eng.process("miot/mi-home/d1/info", payload, 1.0)
    assert isinstance(rec, Record)
    assert rec.data["netif"] == {"localIp": {"country": "GB", "continent": "EU"}}


def test_smartmi_child_lock_is_not_collected() -> None:
    eng = _engine({"smartmi": ConsentState(toggles=frozenset({"user_experience_program"}))})
    out = eng.process("miot/smartmi/d1/props", b'{"params":{"child_lock":"on","aqi":12}}', 1.0)
    assert isinstance(out, Held)  # smartmi names no region: never sent
    assert out.record.data == {"params": {"aqi": 12}}
