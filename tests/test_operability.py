"""What an operator watches: build and process metrics, JSON logs without values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import generate_latest

from gateway.internal_events import Events
from gateway.version import VERSION

ROOT = Path(__file__).resolve().parent.parent


def test_build_info_and_process_metrics() -> None:
    text = generate_latest(Events().registry).decode()
    assert (
        f'gateway_build_info{{python="{sys.version.split()[0]}",version="{VERSION}"}} 1.0' in text
    )
    for name in ("process_start_time_seconds", "process_cpu_seconds_total"):
        assert f"\n{name} " in text, name


def test_json_logs_carry_label_fields_never_values(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_text("ab" * 32)
    secret_mac = "A4:C1:38:9F:2E:7B"
    lines = [
        {"topic": "miot/mi-home/dev-QZ771/info", "payload": {"mac": secret_mac, "zz_extra": 1}},
        {"topic": "miot/mi-home/dev-QZ771/info", "payload": "not json QZsecret"},
        {"topic": "miot/nope/dev-QZ771/info", "payload": {"x": 1}},
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "enforce",
            "--key-file",
            str(key),
            "--log-format",
            "json",
            "-v",
        ],
        input="".join(json.dumps(x) + "\n" for x in lines).encode(),
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    logs = [ln for ln in out.stderr.decode().splitlines() if ln.startswith("{")]
    docs = [json.loads(ln) for ln in logs]
    assert all({"time", "level", "logger", "message"} <= d.keys() for d in docs)
    rejected = [d for d in docs if d["message"] == "message rejected"]
    assert {(d["product"], d["reason"]) for d in rejected} == {
        ("mi-home", "invalid_json"),
        ("_unknown", "unknown_product"),
    }
    # An undeclared key outside the known vocabulary is logged under its parent, never named.
    assert any(d.get("field") == "_other" for d in docs)
    for value in (secret_mac, "QZ771", "QZsecret", "zz_extra"):
        assert value not in out.stderr.decode()
