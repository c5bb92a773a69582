"""Read a gateway `/metrics` scrape (URL or file) into the few series the report needs.

Only the gateway's own bounded series are kept; everything else in the text is ignored.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client.parser import text_string_to_metric_families

FETCH_TIMEOUT = 5.0
# A scrape of a gateway is a few hundred kB at most; refuse anything far larger.
MAX_BYTES = 32 * 1024 * 1024


class ReportError(Exception):
    """The metrics cannot be read or are not a gateway's; the message names the source."""


@dataclass(slots=True)
class Scrape:
    """Counter values by label tuple, summed over duplicate series."""

    received: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )  # product, kind
    outcomes: defaultdict[tuple[str, str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )  # product, kind, outcome
    rejected: defaultdict[tuple[str, str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )  # product, kind, reason
    fields: defaultdict[tuple[str, str, str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )  # product, kind, field, action
    undeclared: defaultdict[tuple[str, str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )  # product, kind, field
    sink_records: defaultdict[tuple[str, str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )  # sink, region, outcome
    region_records: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )  # product, region
    withdrawals: defaultdict[tuple[str], float] = field(
        default_factory=lambda: defaultdict(float)
    )  # product
    erasures: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )  # sink, region
    # product -> policy hash prefixes the gateway reports as loaded (normally exactly one).
    policy_hashes: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    process_start: float | None = None
    # Set when the numbers are increases over a window across instances (a Prometheus server).
    window: str | None = None
    instances: int | None = None

    def products(self) -> set[str]:
        out: set[str] = set(self.policy_hashes)
        tables = (self.received, self.outcomes, self.rejected, self.fields, self.undeclared)
        for table in (*tables, self.region_records, self.withdrawals):
            out.update(key[0] for key in table)
        return out


# sample name -> (attribute of Scrape, label names in key order)
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "gateway_messages_received_total": ("received", ("product", "kind")),
    "gateway_messages_total": ("outcomes", ("product", "kind", "outcome")),
    "gateway_messages_rejected_total": ("rejected", ("product", "kind", "reason")),
    "gateway_fields_total": ("fields", ("product", "kind", "field", "action")),
    "gateway_undeclared_fields_total": ("undeclared", ("product", "kind", "field")),
    "gateway_sink_records_total": ("sink_records", ("sink", "region", "outcome")),
    "gateway_region_records_total": ("region_records", ("product", "region")),
    "gateway_consent_withdrawals_total": ("withdrawals", ("product",)),
    "gateway_erasure_requests_total": ("erasures", ("sink", "region")),
}


def display_source(source: str) -> str:
    """The source as shown in the report: a URL without credentials, query or fragment."""
    if not is_url(source):
        return source
    parts = urlsplit(source)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    shown = f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"
    return shown + ("?…" if parts.query else "")


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def read_source(source: str) -> str:
    """The text of `source`: an http(s) URL fetched with a 5 s timeout, else a file path."""
    shown = display_source(source)
    if is_url(source):
        return fetch(source, shown)
    if "://" in source:
        raise ReportError(f"{shown}: only http:// and https:// URLs or a file path are accepted")
    path = Path(source)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ReportError(f"{shown}: cannot read metrics file: {exc.strerror}") from None
    return _text(raw, shown)


def fetch(url: str, shown: str) -> str:
    """GET `url`; `user:password@` in it becomes HTTP basic auth (urllib would otherwise take
    it for part of the host name)."""
    parts = urlsplit(url)
    headers = {"Accept": "text/plain;version=0.0.4"}
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(cred).decode()
        netloc = parts.netloc.rpartition("@")[2]
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    # The scheme is checked by the caller: only http and https reach urllib.
    req = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT) as resp:  # noqa: S310
            raw = resp.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ReportError(
            f"cannot fetch metrics from {shown}: HTTP {exc.code} {exc.reason}"
        ) from None
    except urllib.error.URLError as exc:
        raise ReportError(f"cannot fetch metrics from {shown}: {exc.reason}") from None
    except TimeoutError:
        raise ReportError(
            f"cannot fetch metrics from {shown}: no answer within {FETCH_TIMEOUT:g} s"
        ) from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot fetch metrics from {shown}: {exc}") from None
    return _text(raw, shown)


def _text(raw: bytes, shown: str) -> str:
    if len(raw) > MAX_BYTES:
        raise ReportError(f"{shown}: more than {MAX_BYTES} bytes: not a gateway scrape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReportError(f"{shown}: metrics are not UTF-8 text") from None


def parse(text: str, shown: str) -> Scrape:
    """The gateway series of a Prometheus text exposition.

    Counters parsed from text keep their `_total` sample name (the family name drops it), so
    samples are matched by sample name; `_created` samples are ignored.
    """
    out = Scrape()
    seen_gateway = False
    try:
        for fam in text_string_to_metric_families(text):
            if fam.name.startswith("gateway_"):
                seen_gateway = True
            for s in fam.samples:
                spec = COUNTERS.get(s.name)
                if spec is not None:
                    attr, names = spec
                    if all(n in s.labels for n in names):
                        table: defaultdict[tuple[str, ...], float] = getattr(out, attr)
                        table[tuple(s.labels[n] for n in names)] += s.value
                elif s.name == "gateway_policy_info":
                    product, h = s.labels.get("product"), s.labels.get("policy_hash")
                    if product is not None and h is not None and s.value > 0:
                        out.policy_hashes[product].add(h)
                elif s.name == "process_start_time_seconds" and s.value > 0:
                    out.process_start = s.value
    except ValueError as exc:
        detail = str(exc)[:120]
        raise ReportError(f"{shown}: not Prometheus text format: {detail}") from None
    if not seen_gateway:
        raise ReportError(f"{shown}: no gateway_* metrics: is this the gateway's /metrics?")
    return out
