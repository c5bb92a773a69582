"""`gateway capture` against a real broker: what it writes, `enforce` and `explain` read."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.servers import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "tests" / "data" / "policies"
MAC = "3C:BD:3E:11:22:33"
INFO = {"fw_ver": "1.2.3", "mac": MAC, "token": "QZtoken-99"}


def gw(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", *args]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


def test_capture_then_enforce_and_explain(mosquitto: Mosquitto, tmp_path: Path) -> None:
    out = tmp_path / "capture.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "capture",
            "--broker",
            f"127.0.0.1:{mosquitto.port}",
            "--out",
            str(out),
            "--count",
            "3",
        ],
        cwd=ROOT,
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    warning = proc.stderr.readline()
    assert "raw device messages" in warning and "0600" in warning
    assert "subscribed" in proc.stderr.readline()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        for topic, payload in (
            ("miot/purifier/dev-1/info", json.dumps(INFO).encode()),
            ("miot/purifier/dev-1/info", b'{"fw_ver": "1", "fw_ver": "2"}'),
            ("miot/purifier/dev-1/props", b"\xff\xfe not utf-8"),
        ):
            pub.publish(topic, payload, qos=1).wait_for_publish(10)
        assert proc.wait(30) == 0
    finally:
        pub.loop_stop()
        pub.disconnect()
        if proc.poll() is None:
            proc.kill()
    assert "3 message(s) written" in proc.stderr.read()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["topic"] for x in lines] == ["miot/purifier/dev-1/info"] * 2 + [
        "miot/purifier/dev-1/props"
    ]
    assert "payload_b64" in lines[2]

    key = tmp_path / "k.key"
    key.write_text("cd" * 32)
    enforced = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "enforce",
            "--policies",
            str(POLICIES),
            "--key-file",
            str(key),
            "--region",
            "de",
        ],
        stdin=out.open("rb"),
        capture_output=True,
        cwd=ROOT,
        env=_env(),
        timeout=60,
        check=True,
    )
    outcomes = [json.loads(x) for x in enforced.stdout.splitlines()]
    assert outcomes[0]["data"]["fw_ver"] == "1.2.3"
    assert MAC not in enforced.stdout.decode()
    # The exact bytes were kept: the duplicate key is still refused; the binary payload too.
    assert outcomes[1]["rejected"]["reason"] == "duplicate_key"
    assert outcomes[2]["rejected"]["reason"] == "invalid_utf8"
    explained = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "explain",
            "--policies",
            str(POLICIES),
            "--key-file",
            str(key),
            "--input",
            str(out),
        ],
        capture_output=True,
        cwd=ROOT,
        env=_env(),
        timeout=60,
        check=True,
    )
    assert len(explained.stdout.splitlines()) == 3
    assert MAC not in explained.stdout.decode()


def test_capture_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    t0 = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "capture",
            "--broker",
            "127.0.0.1:1",
            "--out",
            str(tmp_path / "c.jsonl"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert out.returncode != 0 and time.monotonic() - t0 < 30
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("gateway: --broker 127.0.0.1:1:")
