"""Read the report's numbers from a Prometheus server: every replica, over a time window.

One instant query per counter, `sum by (labels) (increase(counter[window]))`, so the report
covers all the instances Prometheus scrapes, across their restarts. Only aggregated,
bounded labels come back, as from a scrape.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit

import msgspec

from gateway.report.scrape import COUNTERS, ReportError, Scrape, display_source, fetch

_DURATION = re.compile(r"^(\d+(ms|[smhdwy]))+$")


class _Sample(msgspec.Struct):
    metric: dict[str, str]
    value: tuple[float, str]


class _Data(msgspec.Struct):
    resultType: str
    result: list[_Sample]


class _Answer(msgspec.Struct):
    status: str
    data: _Data | None = None
    error: str | None = None


def _query(base: str, shown: str, promql: str) -> list[_Sample]:
    url = f"{base}/api/v1/query?{urlencode({'query': promql})}"
    text = fetch(url, shown)
    try:
        answer = msgspec.json.decode(text, type=_Answer)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ReportError(f"{shown}: not a Prometheus query API answer") from None
    if answer.status != "success" or answer.data is None:
        raise ReportError(f"{shown}: query refused: {(answer.error or answer.status)[:200]}")
    return answer.data.result


def read_prometheus(url: str, window: str) -> tuple[Scrape, str]:
    """The Scrape of every gateway instance `url` knows, increases over `window` (e.g. 24h)."""
    if not _DURATION.match(window):
        raise ReportError(f"--range {window}: not a Prometheus duration (e.g. 30m, 24h, 7d)")
    shown = display_source(url)
    if urlsplit(url).scheme not in ("http", "https"):
        raise ReportError(f"{shown}: --prometheus takes an http:// or https:// URL")
    base = url.rstrip("/")
    out = Scrape(window=window)
    found = False
    for name, (attr, labels) in COUNTERS.items():
        promql = f"sum by ({', '.join(labels)}) (increase({name}[{window}]))"
        table = getattr(out, attr)
        for s in _query(base, shown, promql):
            found = True
            if all(n in s.metric for n in labels):
                # increase() extrapolates to the window's edges: whole counts read truer.
                table[tuple(s.metric[n] for n in labels)] += round(float(s.value[1]))
    for s in _query(base, shown, "count by (product, policy_hash) (gateway_policy_info)"):
        found = True
        if "product" in s.metric and "policy_hash" in s.metric:
            out.policy_hashes[s.metric["product"]].add(s.metric["policy_hash"])
    instances = _query(base, shown, f"count(max_over_time(gateway_source_connected[{window}]))")
    out.instances = int(float(instances[0].value[1])) if instances else 0
    if not found:
        raise ReportError(f"{shown}: no gateway_* series in the last {window}")
    return out, f"{shown} (Prometheus, last {window})"
