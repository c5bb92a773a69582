"""The adversarial corpus of real device shapes (tests/data/corpus, sources in
tests/data/README.md) through `gateway enforce` and through the MQTT path: no identifier, in any
form tests/leakcheck.py knows, leaves in a forwarded or held record, a /metrics label or a log
line; every line gets exactly one answer; and a well-formed declared harmless field is kept."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig, Routing, SinkSpec
from gateway.decode.plan import effective_action
from gateway.policy.loader import DEFAULT_DIR, load_dir
from gateway.service import Gateway
from gateway.sinks.mqtt.config import MqttSinkConfig
from tests.leakcheck import leaked_forms
from tests.servers import Mosquitto
from tests.test_policy_readings import run_enforce
from tests.test_service import (  # the fixture is shared with the service tests
    Publisher,
    config,
    gateway_factory,  # noqa: F401
    records,
    wait_for,
)
from tests.test_sinks import Subscriber

CORPUS = Path(__file__).parent / "data" / "corpus"
# Wire keys that hold an identifier or a secret in every shape of the corpus: their raw values
# must not leave either, whatever the policy does with them.
ID_KEYS = {"mac", "bssid", "ssid", "token", "uid", "did", "sid", "localIp", "gw", "ip"}
POLICIES = load_dir(DEFAULT_DIR)


def _lines() -> list[dict[str, Any]]:
    out = []
    for f in sorted(CORPUS.glob("*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def _raw_ids(obj: Any) -> list[str | int]:
    """Values under identifier keys, at any depth (strings of 6+ characters, big integers)."""
    found: list[str | int] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            text = isinstance(v, str) and len(v) >= 6 and v != "network"
            number = isinstance(v, int) and not isinstance(v, bool) and v > 99999
            if k in ID_KEYS and (text or number):
                found.append(v)
            else:
                found += _raw_ids(v)
    elif isinstance(obj, list):
        for v in obj:
            found += _raw_ids(v)
    return found


def _identifiers(lines: list[dict[str, Any]]) -> list[str | int]:
    ids: list[str | int] = []
    for line in lines:
        ids += line.get("identifiers", [])
        ids += _raw_ids(line["payload"])
        ids.append(line["topic"].split("/")[2])  # the device id itself
    # Under 6 characters (the corpus's device ids `d001`...) a form matches hex by chance.
    return [i for i in ids if not (isinstance(i, str) and len(i) < 6)]


def _kept_paths(product: str, kind: str) -> dict[str, str]:
    """Declared fields a record keeps as they are (no consent needed), by dotted path."""
    lp = POLICIES.get(product)
    if lp is None or kind not in lp.policy.kinds:
        return {}
    rule = lp.policy.kinds[kind]
    if rule.consent is not None:
        return {}
    return {
        f.path: f.path
        for f in rule.fields
        if effective_action(f) == "keep" and f.consent is None and "[]" not in f.path
    }


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def test_enforce_leaks_nothing_and_keeps_what_is_well_formed(tmp_path: Path) -> None:
    lines = _lines()
    out = run_enforce(lines, tmp_path)
    answers = [json.loads(a) for a in out.stdout.splitlines()]
    assert len(answers) == len(lines)  # one answer per line, in order
    assert b"Traceback" not in out.stderr
    leaks = leaked_forms(_identifiers(lines), out.stdout + out.stderr)
    assert leaks == [], leaks
    # A clean line (no identifier hidden in a declared value) keeps every declared harmless
    # field it carries, as it was sent.
    checked = 0
    for line, answer in zip(lines, answers, strict=True):
        if line.get("identifiers"):
            continue
        _, product, _, kind = line["topic"].split("/")
        record = answer.get("held", answer)
        for path in _kept_paths(product, kind):
            sent = _get(line["payload"], path)
            if sent is not None:
                assert "data" in record, (line["topic"], answer)
                assert _get(record["data"], path) == sent, (line["topic"], path)
                checked += 1
    assert checked >= 10


def _through_the_gateway(
    tmp_path: Path,
    mosquitto: Mosquitto,
    gateway_factory: Callable[[GatewayConfig], Gateway],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    **cfg: Any,
) -> tuple[list[dict[str, Any]], GatewayConfig, Gateway]:
    """The corpus published to the devices' broker, every message answered by a gateway
    that routes to `us` (a forwarded record only once its sink has it)."""
    caplog.set_level(logging.DEBUG)
    lines = _lines()
    gw_cfg = config(tmp_path, mosquitto.port, routing=Routing(default_region="us"), **cfg)
    gw = gateway_factory(gw_cfg)
    pub = Publisher(mosquitto.port)
    try:
        for line in lines:
            pub.send(line["topic"], json.dumps(line["payload"]).encode())
    finally:
        pub.close()
    wait_for(lambda: sum(gw.events.outcomes.values()) >= len(lines), what="every message answered")
    return lines, gw_cfg, gw


def _left_behind(
    tmp_path: Path, cfg: GatewayConfig, gw: Gateway, caplog: pytest.LogCaptureFixture
) -> bytes:
    """Every file under tmp_path (sinks, state), /metrics, then the logs up to a stop."""
    metrics: bytes = urllib.request.urlopen(
        f"http://{cfg.metrics_listen}/metrics", timeout=5
    ).read()
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    gw.stop()
    return written + metrics + caplog.text.encode()


def _forwarded(gw: Gateway) -> int:
    return sum(n for (_p, _k, outcome), n in gw.events.outcomes.items() if outcome == "forwarded")


def test_mqtt_path_leaks_nothing_to_sinks_metrics_or_logs(
    tmp_path: Path,
    mosquitto: Mosquitto,
    gateway_factory: Callable[[GatewayConfig], Gateway],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines, cfg, gw = _through_the_gateway(tmp_path, mosquitto, gateway_factory, caplog)
    forwarded = records(tmp_path / "sinks", "us")
    assert len(forwarded) >= 20
    assert len(forwarded) == _forwarded(gw)
    leaks = leaked_forms(_identifiers(lines), _left_behind(tmp_path, cfg, gw, caplog))
    assert leaks == [], leaks


def test_mqtt_sink_leaks_nothing_to_the_regional_broker_metrics_or_logs(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sink_mosquitto: Mosquitto,
    gateway_factory: Callable[[GatewayConfig], Gateway],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Everything the regional broker is given, on any topic, from before the gateway starts.
    sub = Subscriber(sink_mosquitto.port, topic="#")
    try:
        sink = MqttSinkConfig(host="127.0.0.1", port=sink_mosquitto.port)
        lines, cfg, gw = _through_the_gateway(
            tmp_path,
            mosquitto,
            gateway_factory,
            caplog,
            sinks=(SinkSpec(type="mqtt", mqtt=sink),),
        )
        expected = _forwarded(gw)
        sub.wait_for(expected, timeout=30)
        blob = _left_behind(tmp_path, cfg, gw, caplog)
        time.sleep(0.5)  # and whatever the gateway publishes as it stops (none expected)
        with sub.cond:
            got = list(sub.msgs)
    finally:
        sub.close()
    assert expected >= 20
    assert len(got) == expected  # each record once, and nothing else
    assert all(topic.startswith("gateway/us/") for topic, _, _ in got)
    sent = b"\n".join(f"{topic} {props}".encode() + b" " + body for topic, body, props in got)
    leaks = leaked_forms(_identifiers(lines), sent + blob)
    assert leaks == [], leaks
