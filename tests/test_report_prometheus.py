"""`gateway report --prometheus`: two gateway replicas scraped by a real Prometheus server.

Each replica is the gateway's own /metrics endpoint (`serve_http` on a real `Events`) whose
counters grow while Prometheus scrapes them every 0.5 s; the report must cover both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.brokers import free_port
from gateway.internal_events import Events
from gateway.policy.loader import load_dir
from gateway.telemetry_http import serve_http

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "tests" / "data" / "policies"


class Replica:
    def __init__(self, region: str) -> None:
        self.events = Events()
        self.region = region
        self.port = free_port()
        self.stop: Callable[[], None] = serve_http("127.0.0.1", self.port, self)

    def healthy(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return True

    def traffic(self, n: int) -> None:
        ev = self.events
        for _ in range(n):
            ev.message_received("purifier", "info")
            ev.record_forwarded("purifier", "info", self.region)
            ev.undeclared[ev.undeclared_key("purifier", "info", "", "miio_ver")] += 1


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    rs = [Replica("de"), Replica("us")]
    for r in rs:
        r.events.connected.set(1)
        r.events.policies_loaded({"purifier": load_dir(POLICIES)["purifier"].hash})
    try:
        yield rs
    finally:
        for r in rs:
            r.stop()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        data: bytes = resp.read()
        return data


def _query(base: str, promql: str) -> list[dict[str, object]]:
    body = json.loads(_get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"))
    result: list[dict[str, object]] = body["data"]["result"]
    return result


@pytest.fixture
def prometheus(tmp_path: Path, replicas: list[Replica]) -> Iterator[str]:
    exe = shutil.which("prometheus")
    assert exe is not None, "prometheus not found: Debian package `prometheus` (scripts/test)"
    targets = ", ".join(f"'127.0.0.1:{r.port}'" for r in replicas)
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        "global: {scrape_interval: 500ms, evaluation_interval: 500ms}\n"
        "scrape_configs:\n"
        f"  - job_name: privacy-gateway\n    static_configs: [{{targets: [{targets}]}}]\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={conf}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                _get(f"{base}/-/ready")
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("prometheus did not become ready within 30 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_report_covers_every_replica(
    tmp_path: Path, replicas: list[Replica], prometheus: str
) -> None:
    # Traffic keeps arriving while Prometheus scrapes, until both replicas show an increase.
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        for r in replicas:
            r.traffic(10)
        q = "sum by (region) (increase(gateway_region_records_total[5m])) > 0"
        if len(_query(prometheus, q)) == 2:
            break
        time.sleep(0.5)
    else:
        pytest.fail("Prometheus never saw both replicas' records increase")
    out = tmp_path / "report.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "report",
            "--prometheus",
            prometheus,
            "--range",
            "5m",
            "--policies",
            str(POLICIES),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "increase over the last 5m, summed over 2 instance(s)" in page
    assert f"{prometheus} (Prometheus, last 5m)" in page
    sec = page[page.index('<section id="p-purifier">') :]
    verdict = sec[: sec.index("</div>")]
    assert "Collection matches the published policy" in verdict, verdict
    assert "records only in regions the policy names: de " in verdict
    assert ", us " in verdict  # the second replica's region
    assert "miio_ver" in sec


def test_bad_range_and_unreachable_server_are_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    for args, says in (
        (["--prometheus", "http://127.0.0.1:1", "--range", "a day"], "not a Prometheus duration"),
        (["--prometheus", "http://127.0.0.1:1"], "cannot fetch metrics from http://127.0.0.1:1"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "gateway", "report", *args, "--out", str(tmp_path / "r.html")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
            check=False,
        )
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert says in proc.stderr
