"""The `aggregate` action end to end, through a real mosquitto and the file sinks: the camera's
IP never leaves per device; one statistics record per closed window and region counts distinct
devices per country, cells under k suppressed, nothing double-counted across a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, Routing
from gateway.envelope import PolicyRef
from gateway.policy.loader import DEFAULT_DIR
from gateway.service import Gateway
from gateway.transforms.aggregate import Aggregator
from tests.servers import Mosquitto
from tests.test_service import (  # the fixture is shared with the service tests
    Publisher,
    _write_config,
    config,
    gateway_factory,  # noqa: F401
    records,
    wait_for,
)

WINDOW_S = 3
K = 3
GB, US = "81.2.69.142", "8.8.8.8"


def _policy_dir(tmp_path: Path, window: int = WINDOW_S) -> Path:
    """The shipped Mijia camera policy, with a window short enough to close in a test."""
    d = tmp_path / "policies"
    d.mkdir()
    text = (DEFAULT_DIR / "mijia-camera.toml").read_text()
    head = f"aggregate_window_s = {window}\nk_anonymity = {K}\n"
    marker = "\n[[regions]]"
    i = text.index(marker)
    (d / "mijia-camera.toml").write_text(text[:i] + "\n" + head + text[i:])
    return d


def _info(ip: str, n: int) -> bytes:
    return json.dumps({"id": n, "fw_ver": "3.5.8_0041", "netif": {"localIp": ip}}).encode()


def _stats(tmp_path: Path) -> list[dict[str, Any]]:
    return [r for r in records(tmp_path / "sinks", "us") if r.get("kind") == "stats"]


def _wait_window_start(window: int = WINDOW_S) -> None:
    """Start right after a window boundary, so a test's messages share one window."""
    now = time.time()
    time.sleep(window - now % window + 0.05)


def test_ip_leaves_only_as_k_anonymous_counts(
    tmp_path: Path,
    mosquitto: Mosquitto,
    gateway_factory: Callable[[GatewayConfig], Gateway],  # noqa: F811
) -> None:
    cfg = config(
        tmp_path,
        mosquitto.port,
        policies=str(_policy_dir(tmp_path)),
        routing=Routing(default_region="us"),
    )
    gw = gateway_factory(cfg)
    pub = Publisher(mosquitto.port)
    _wait_window_start()
    # 4 devices in GB (one twice), 1 in the US: the US cell is under k.
    sent = 0
    for dev, ip in [("gb1", GB), ("gb2", GB), ("gb3", GB), ("gb4", GB), ("gb1", GB), ("us1", US)]:
        pub.send(f"miot/mijia-camera/{dev}/info", _info(ip, sent))
        sent += 1
    wait_for(lambda: len(records(tmp_path / "sinks", "us")) >= sent, what="records")
    per_device = [r for r in records(tmp_path / "sinks", "us") if r["kind"] == "info"]
    assert len(per_device) == sent
    for r in per_device:
        assert "netif" not in r["data"] and GB not in json.dumps(r) and '"GB"' not in json.dumps(r)
    wait_for(lambda: len(_stats(tmp_path)) == 1, timeout=WINDOW_S + 10, what="statistics")
    (stats,) = _stats(tmp_path)
    assert stats["devices_by_country"] == {"GB": 4}  # US: 1 device < k, suppressed
    assert stats["k"] == K and stats["region"] == "us"
    assert "device" not in stats
    pub.close()
    gw.stop()


def test_restart_within_a_window_does_not_double_count(
    tmp_path: Path,
    mosquitto: Mosquitto,
    gateway_factory: Callable[[GatewayConfig], Gateway],  # noqa: F811
) -> None:
    window = 10  # room for a stop and a start inside one window
    cfg = config(
        tmp_path,
        mosquitto.port,
        policies=str(_policy_dir(tmp_path, window)),
        routing=Routing(default_region="us"),
    )
    pub = Publisher(mosquitto.port)
    gw = gateway_factory(cfg)
    _wait_window_start(window)
    for i, dev in enumerate(["a", "b", "c"]):
        pub.send(f"miot/mijia-camera/{dev}/info", _info(GB, i))
    wait_for(lambda: len(records(tmp_path / "sinks", "us")) >= 3, what="records")
    gw.stop()
    # What carried the count across the restart is sealed: no country, no JSON on disk.
    log = (tmp_path / "state" / "worker-0" / "aggregate.log").read_bytes()
    assert len(log.splitlines()) == 3 and b'"GB"' not in log and b"[" not in log
    gw2 = gateway_factory(cfg)
    for i, dev in enumerate(["a", "b", "c", "d"]):  # three seen before the restart, one new
        pub.send(f"miot/mijia-camera/{dev}/info", _info(GB, 10 + i))
    wait_for(lambda: len(records(tmp_path / "sinks", "us")) >= 7, what="records")
    wait_for(lambda: len(_stats(tmp_path)) >= 1, timeout=window + 10, what="statistics")
    # 4 distinct devices, not 7: the observations before the restart were durable.
    assert [s["devices_by_country"] for s in _stats(tmp_path)] == [{"GB": 4}]
    pub.close()
    gw2.stop()


def test_a_log_in_clear_from_an_older_version_is_read_then_sealed(tmp_path: Path) -> None:
    key, log = bytes(32), tmp_path / "aggregate.log"
    start = int(time.time() // 3600) * 3600
    clear = [
        json.dumps(["mijia-camera", "us", start, 3600, "GB", f"{i:024x}"]).encode()
        for i in range(3)
    ]
    log.write_bytes(b"\n".join(clear) + b"\n" + b'["mijia-camera","us",')  # torn last line
    agg = Aggregator(key, log)
    assert agg.damaged_lines == 1
    on_disk = log.read_bytes()
    assert len(on_disk.splitlines()) == 3 and b'"GB"' not in on_disk and b"[" not in on_disk
    # The same three devices after a restart, and a fourth: counted once each.
    agg = Aggregator(key, log)
    agg.observe("mijia-camera", "us", "GB", "new-device", at=start + 1, length=3600)
    agg.sync()
    cells = Aggregator(key, log)._cells[("mijia-camera", "us", start, 3600)]
    assert {c: len(d) for c, d in cells.items()} == {"GB": 4}
    # Another key cannot read it: every line counted as damaged, nothing made up.
    assert Aggregator(bytes([1]) * 32, log).damaged_lines == 4


def _worker(root: Path, i: int, key: bytes) -> Aggregator:
    (root / f"worker-{i}").mkdir(exist_ok=True)
    return Aggregator(key, root / f"worker-{i}" / "aggregate.log", shared=root, emits=i == 0)


def test_two_workers_count_each_device_once_and_only_worker_0_emits(tmp_path: Path) -> None:
    key, refs = bytes(32), {"mijia-camera": (PolicyRef("mijia-camera", "h"), K)}
    start = int(time.time() // 60) * 60 - 120  # a window that has closed
    w0, w1 = _worker(tmp_path, 0, key), _worker(tmp_path, 1, key)
    # A shared subscription spreads a device's messages over both workers.
    for agg, devices in ((w0, ["a", "b"]), (w1, ["a", "c"])):
        for dev in devices:
            agg.observe("mijia-camera", "us", "GB", dev, at=start + 1, length=60)
        agg.sync()
    now = start + 60
    assert w1.due(now, refs) == []  # worker 1 never emits
    (stats,) = w0.due(now, refs)
    # 3 devices: not 2 + 2, and not two cells of 2 suppressed under k = 3.
    assert stats.devices_by_country == {"GB": K}
    w0.emitted([stats])
    assert w0.due(now + 60, refs) == []
    assert w1.due(now + 60, refs) == []  # it has seen worker 0's marker: window forgotten
    assert not (tmp_path / "worker-1" / "aggregate.log").exists()
    # A restarted worker 0 does not emit the window again.
    w0 = _worker(tmp_path, 0, key)
    assert w0.due(now + 60, refs) == []
    # The next window, after worker 1's log was rewritten (here: removed and begun anew).
    for agg, devices in ((w1, ["d", "e"]), (w0, ["f"])):
        for dev in devices:
            agg.observe("mijia-camera", "us", "GB", dev, at=now + 1, length=60)
        agg.sync()
    (stats,) = w0.due(now + 62, refs)
    assert stats.devices_by_country == {"GB": 3}


def test_two_worker_processes_emit_one_statistics_record_per_window(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    window = 6
    cfg = _write_config(
        tmp_path,
        mosquitto.port,
        f'''[[sinks]]
type = "file"
file = {{ dir = "{tmp_path / "sinks"}" }}''',
    )
    text = cfg.read_text().replace("[source]", "[source]\nshared = true")
    text = text.replace('default_region = "de"', 'default_region = "us"')
    text = text.replace(
        next(line for line in text.splitlines() if line.startswith("policies")),
        f'policies = "{_policy_dir(tmp_path, window)}"',
    )
    cfg.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(cfg), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sinks = tmp_path / "sinks"

    def stats(w: int) -> list[dict[str, Any]]:
        return [r for r in records(sinks / f"worker-{w}", "us") if r.get("kind") == "stats"]

    pub = Publisher(mosquitto.port)
    try:
        wait_for(lambda: (tmp_path / "state" / "worker-1").exists())
        time.sleep(1.5)
        _wait_window_start(window)
        devices = [f"cam{i}" for i in range(4)]
        for n in range(5):  # each device 5 times: both workers see most of them
            for dev in devices:
                pub.send(f"miot/mijia-camera/{dev}/info", _info(GB, n))
        wait_for(
            lambda: sum(len(records(sinks / f"worker-{w}", "us")) for w in (0, 1)) >= 20,
            what="20 records across both workers",
        )
        wait_for(lambda: bool(stats(0)), timeout=window + 20, what="statistics from worker 0")
        assert [s["devices_by_country"] for s in stats(0)] == [{"GB": 4}]
        time.sleep(2)
        assert stats(1) == [] and len(stats(0)) == 1
    finally:
        pub.close()
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0


def test_a_window_marked_emitted_is_not_emitted_again_after_a_crash(tmp_path: Path) -> None:
    """A crash after the marker was written but before the log was rewritten."""
    key, refs = bytes(32), {"mijia-camera": (PolicyRef("mijia-camera", "h"), 1)}
    start = int(time.time() // 60) * 60 - 120
    w0 = _worker(tmp_path, 0, key)
    w0.observe("mijia-camera", "us", "GB", "a", at=start + 1, length=60)
    w0.sync()
    (tmp_path / "aggregate.emitted").write_text(f"{start + 60}\n")
    assert _worker(tmp_path, 0, key).due(start + 120, refs) == []
