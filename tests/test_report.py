"""`gateway report`: HTML compliance report from a real metrics scrape of a real engine."""

from __future__ import annotations

import base64
import http.server
import re
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import msgspec
import prometheus_client
import pytest

from gateway.engine import Engine
from gateway.envelope import Record
from gateway.explain import policy_rows
from gateway.internal_events import Events
from gateway.policy.loader import LoadedPolicy, load_dir
from gateway.report import ReportError, write_report
from gateway.route.router import Router
from gateway.transforms.pseudonymize import KeyRing

POLICIES = Path(__file__).parent / "data" / "policies"
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)

# Every value below is distinctive, so its absence from the report means something.
DEVICE = "device-7f3a9c21"
INFO = {
    "model": "zhimi.airpurifier.vk42",
    "mac": "3C:BD:3E:11:22:33",
    "uid": 987654321012,
    "token": "deadbeefcafef00d1234",
    "fw_ver": "9.8.7_4321",
    "life": 81234,
    "ap": {"ssid": "HomeNet-Gretel", "bssid": "AA:BB:CC:DD:EE:01", "rssi": -67},
    "netif": {"localIp": "81.2.69.160", "gw": "192.168.77.1"},
    "loc": {"lat": 52.520008, "lon": 13.404954},
    "note": "call me at gretel.schmidt@example.org",
    "imei_secret": "356938035643809",  # undeclared: drift
}
PROPS = {
    "id": 4411,
    "method": "props_changed",
    "params": {
        "power": "on-state-xyz",
        "aqi": 48213,
        "children": [{"did": "child-did-55ab", "on": True}],
        "wifi_psk": "hunter2-password",  # undeclared, nested: drift
    },
}
BAD_COMMAND = {"id": 7, "method": "factory_reset_now", "params": ["arg-value-q9"]}
TYPE_ERROR = {"model": "model-for-type-error", "life": "not-a-number-zz"}
VALUES: list[str] = [
    DEVICE,
    "zhimi.airpurifier.vk42",
    "3C:BD:3E:11:22:33",
    "987654321012",
    "deadbeefcafef00d1234",
    "9.8.7_4321",
    "81234",
    "HomeNet-Gretel",
    "AA:BB:CC:DD:EE:01",
    "81.2.69.160",
    "192.168.77.1",
    "52.52",
    "13.40",
    "gretel",
    "example.org",
    "356938035643809",
    "on-state-xyz",
    "48213",
    "child-did-55ab",
    "hunter2-password",
    "factory_reset_now",
    "arg-value-q9",
    "model-for-type-error",
    "not-a-number-zz",
]


def _send(
    engine: Engine, kind: str, payload: bytes | Mapping[str, object], product: str = "purifier"
) -> None:
    raw = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    result = engine.process(f"miot/{product}/{DEVICE}/{kind}", raw, time.time())
    if isinstance(result, Record):
        # The service counts a record as forwarded once a sink took it; do the same here.
        engine.events.record_forwarded(result.product, result.kind, result.region)


@pytest.fixture(scope="module")
def policies() -> dict[str, LoadedPolicy]:
    return load_dir(POLICIES)


@pytest.fixture(scope="module")
def metrics_text(policies: dict[str, LoadedPolicy]) -> bytes:
    events = Events()
    engine = Engine(policies, KeyRing(b"k" * 32), Router("de"), events=events)
    for _ in range(3):
        _send(engine, "info", INFO)
    _send(engine, "props", PROPS)
    _send(engine, "props", PROPS)
    _send(engine, "command", BAD_COMMAND)  # method_not_allowed
    _send(engine, "info", TYPE_ERROR)  # a field of the wrong type: dropped, nothing left
    _send(engine, "info", b'{"model": "x", "model": "y"}')  # duplicate_key
    _send(engine, "info", b"not json {")  # invalid_json
    _send(engine, "event", {"x": "event-value-8812"})  # undeclared_kind
    _send(engine, "info", INFO, product="no-such-product")  # unknown_product
    # A device in a region the policy does not name: held, not forwarded.
    held = Engine(policies, KeyRing(b"k" * 32), Router("cn"), events=events)
    _send(held, "props", PROPS)
    events.sink_committed("file", "de", 5, 0.01)
    events.consent_withdrawn("purifier")
    events.message_rejected("purifier", "info", "consent_withdrawn", None)
    events.erasure_sent("file", "de")
    return prometheus_client.generate_latest(events.registry)


@pytest.fixture(scope="module")
def report(
    tmp_path_factory: pytest.TempPathFactory,
    metrics_text: bytes,
    policies: dict[str, LoadedPolicy],
) -> str:
    d = tmp_path_factory.mktemp("report")
    (d / "metrics.txt").write_bytes(metrics_text)
    out = d / "report.html"
    write_report(str(d / "metrics.txt"), out, policies, now=NOW)
    return out.read_text(encoding="utf-8")


class _Checker(HTMLParser):
    """Balanced tags, and the number of <svg> inside each chart figure."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input", "wbr", "col", "source"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.svgs = 0
        self.charts: list[int] = []
        self.text: list[str] = []
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs += attrs
        if tag == "figure" and ("class", "chart") in attrs:
            self.charts.append(0)
        if tag == "svg":
            self.svgs += 1
            if "figure" in self.stack and self.charts:
                self.charts[-1] += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs += attrs

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _check(page: str) -> _Checker:
    c = _Checker()
    c.feed(page)
    c.close()
    assert c.errors == []
    assert c.stack == []
    return c


def _section(page: str, product: str) -> str:
    start = page.index(f'<section id="p-{product}">')
    return page[start : page.index("</section>", start)]


def test_names_every_declared_field(report: str, policies: dict[str, LoadedPolicy]) -> None:
    sec = _section(report, "purifier")
    rows = list(policy_rows(policies["purifier"]))
    assert len(rows) == 27
    for r in rows:
        assert f"<code>{r['field']}</code>" in sec, r["field"]
        assert r["cite"] in sec
    # The engine's override of the file shows (a secret declared 'drop' stays drop; the
    # gateway 'drop' declared for a gateway IP is a drop), and opt-in fields are marked.
    assert "opt-in: <code>user_experience</code>" in sec
    assert "consent_drop 3" in sec  # `life`, no consent state: dropped
    assert "keep 3 (3 redacted)" in sec  # `note` carried an e-mail address
    assert "pseudonymize 3" in sec


def test_unseen_drift_rejections_outcomes(report: str, policies: dict[str, LoadedPolicy]) -> None:
    sec = _section(report, "purifier")
    never = sec[sec.index("Declared but never seen") : sec.index("Policy drift")]
    # Command fields: the only command was rejected, so they were never seen.
    assert "<code>set_mode:params.0</code>" in never
    assert "<code>model</code>" not in never
    drift = sec[sec.index("Policy drift") :]
    # Undeclared keys are shown under their declared parent, never by their own name.
    assert "<code>_other</code>" in drift
    assert "<code>params._other</code>" in drift
    assert "imei_secret" not in sec and "wifi_psk" not in sec
    for reason in (
        "method_not_allowed",
        "duplicate_key",
        "invalid_json",
        "undeclared_kind",
    ):
        assert f"<code>{reason}</code>" in sec, reason
    # Outcomes by kind: info 3 forwarded, props 2 forwarded + 1 held (columns: forwarded,
    # withdrawn, no_consent, nothing_declared, rejected, held, shadowed).
    assert re.search(
        r"<td>props</td><td class=\"n\">3</td><td class=\"n\">2</td><td class=\"n\">0</td>"
        r"<td class=\"n\">0</td><td class=\"n\">0</td><td class=\"n\">0</td>"
        r"<td class=\"n\">1</td>",
        sec,
    )
    assert "held at the gateway" in sec
    # Data residency and the policy hash the gateway reported.
    assert "Germany" in sec and "United States" in sec
    assert policies["purifier"].hash in sec
    assert "matches file" in sec
    # Messages of a product without a policy are reported apart.
    others = report[report.index('id="others"') :]
    assert "<code>_unknown</code>" in others and "unknown_product" in others


def test_wellformed_self_contained(report: str) -> None:
    c = _check(report)
    # One <svg> per chart: outcomes, rejections, field actions, drift.
    assert c.charts == [1, 1, 1, 1]
    assert c.svgs == 4
    assert not {"script", "link", "img", "iframe", "object"} & c.tags
    assert not any(k == "src" or (k == "href" and v and not v.startswith("#")) for k, v in c.attrs)
    assert "Generated" in report and "2025-03-04 05:06:07 UTC" in report
    assert "since the gateway process started" in report
    assert "metrics.txt" in report


def test_no_message_value(report: str) -> None:
    for value in VALUES:
        assert value not in report, value
    assert "event-value-8812" not in report


def test_escapes_hostile_labels(tmp_path: Path, policies: dict[str, LoadedPolicy]) -> None:
    text = (
        "# TYPE gateway_undeclared_fields_total counter\n"
        'gateway_undeclared_fields_total{product="purifier",kind="info",'
        'field="<script>alert(1)</script>"} 2\n'
        "# TYPE gateway_messages_total counter\n"
        'gateway_messages_total{product="<b>evil</b>",kind="info",outcome="forwarded"} 1\n'
        "# TYPE gateway_policy_info gauge\n"
        'gateway_policy_info{product="purifier",policy_hash="0123456789ab"} 1\n'
    )
    (tmp_path / "m.txt").write_text(text)
    write_report(str(tmp_path / "m.txt"), tmp_path / "r.html", policies, now=NOW)
    page = (tmp_path / "r.html").read_text()
    _check(page)
    assert "<script" not in page and "alert(1)" not in page
    assert "<code>_other</code>" in page  # the unsafe name is folded, not shown
    assert "&lt;b&gt;evil&lt;/b&gt;" in page and "<b>evil" not in page
    assert "differs" in page  # the gateway reports another policy hash than the file


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    auth: str | None = None

    def do_GET(self) -> None:
        if self.path.partition("?")[0] != "/metrics":
            self.send_error(404)
            return
        if self.auth is not None and self.headers.get("Authorization") != self.auth:
            self.send_error(401)
            return
        self.send_response(200)
        self.send_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(metrics_text: bytes) -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"body": metrics_text})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_fetches_url(
    server: tuple[str, type[_Handler]], tmp_path: Path, policies: dict[str, LoadedPolicy]
) -> None:
    base, _ = server
    out = tmp_path / "r.html"
    write_report(f"{base}/metrics", out, policies, now=NOW)
    page = out.read_text()
    _check(page)
    assert f"{base}/metrics" in page
    assert "<code>_other</code>" in page
    for value in VALUES:
        assert value not in page


def test_url_basic_auth_not_shown(
    server: tuple[str, type[_Handler]], tmp_path: Path, policies: dict[str, LoadedPolicy]
) -> None:
    base, handler = server
    handler.auth = "Basic " + base64.b64encode(b"ops:s3cr3t-pw").decode()
    url = base.replace("http://", "http://ops:s3cr3t-pw@") + "/metrics?token=abc123"
    write_report(url, tmp_path / "r.html", policies, now=NOW)
    page = (tmp_path / "r.html").read_text()
    assert "s3cr3t" not in page and "abc123" not in page and "ops@" not in page
    assert f"{base}/metrics?…" in page


def test_clear_errors(
    server: tuple[str, type[_Handler]], tmp_path: Path, policies: dict[str, LoadedPolicy]
) -> None:
    base, _ = server
    out = tmp_path / "r.html"
    with pytest.raises(ReportError, match=r"HTTP 404"):
        write_report(f"{base}/nope", out, policies)
    with pytest.raises(ReportError, match=r"cannot fetch metrics from http://127\.0\.0\.1:1/"):
        write_report("http://127.0.0.1:1/metrics", out, policies)
    with pytest.raises(ReportError, match="cannot read metrics file"):
        write_report(str(tmp_path / "missing.txt"), out, policies)
    (tmp_path / "page.html").write_text("<html>hello</html>")
    with pytest.raises(ReportError, match="not Prometheus text format"):
        write_report(str(tmp_path / "page.html"), out, policies)
    (tmp_path / "other.txt").write_text("# TYPE up gauge\nup 1\n")
    with pytest.raises(ReportError, match="no gateway_"):
        write_report(str(tmp_path / "other.txt"), out, policies)
    with pytest.raises(ReportError, match="only http"):
        write_report("file:///etc/passwd", out, policies)
    assert not out.exists()


def test_marks_overrides_and_other_policy_version(
    tmp_path: Path, metrics_text: bytes, policies: dict[str, LoadedPolicy]
) -> None:
    # The same product, its MAC declared 'keep': the gateway pseudonymizes it anyway, and the
    # file no longer hashes to what the gateway reported loaded.
    src = (POLICIES / "purifier.toml").read_text()
    line = next(x for x in src.splitlines() if 'path = "mac"' in x)
    d = tmp_path / "policies"
    d.mkdir()
    (d / "purifier.toml").write_text(src.replace(line, line.replace('"pseudonymize"', '"keep"')))
    edited = load_dir(d)
    (tmp_path / "m.txt").write_bytes(metrics_text)
    write_report(str(tmp_path / "m.txt"), tmp_path / "r.html", edited, now=NOW)
    sec = _section((tmp_path / "r.html").read_text(), "purifier")
    row = sec[sec.index("<code>mac</code>") :]
    row = row[: row.index("</tr>")]
    assert "<td>keep</td>" in row and "overridden by the gateway" in row
    assert "differs" in sec and policies["purifier"].hash[:12] in sec


def test_verdict_per_product(report: str) -> None:
    sec = _section(report, "purifier")
    verdict = sec[sec.index("<div class='verdict") : sec.index("</div>")]
    # Held records (a device in `cn`, which the policy does not name) are a point to review;
    # the rest is safe: records only in named regions, drops as designed, withdrawal honoured.
    assert "Collection matches the policy; points to review" in verdict
    assert "1 record(s) held" in verdict
    assert "records only in regions the policy names: de 5" in verdict
    assert "undeclared field name(s) dropped as designed" in verdict
    assert "consent withdrawals honoured: 1 withdrawal(s), 1 message(s)" in verdict
    # Dropped-as-designed is safe, never red; a withdrawal is not a rejection.
    summary = report[report.index("<section id='summary'>") :]
    summary = summary[: summary.index("</section>")]
    assert "tag bad" not in summary
    assert "2 names, " in summary
    rejections = sec[sec.index("<h3>Rejections</h3>") : sec.index("<h3>Declared fields</h3>")]
    assert "consent_withdrawn" not in rejections
    # Records per region, and the erasure request in the sinks table.
    assert re.search(r"<code>de</code></td><td>Germany</td><td>[^<]*</td><td class=\"n\">5<", sec)
    sinks = report[report.index('<section id="sinks">') :]
    assert "Erasure requests" in sinks
