"""`gateway held list|replay|purge`: the held stores of every worker under `state_dir`.

Run while the gateway is stopped (each store is locked by the process that has it open).
Output is counts per product, region and kind: never a value of a record.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from gateway.config import GatewayConfig
from gateway.held.store import HeldStore
from gateway.policy.loader import DEFAULT_DIR, load_dir
from gateway.sinks.base import OutRecord, SinkError
from gateway.spool.spool import SpoolError
from gateway.transforms.pseudonymize import KeyRing


def _in(ids: set[str], r: OutRecord) -> bool:
    return r.msg_id in ids


class HeldToolError(Exception):
    """One line for the operator: what failed and where."""


def _stores(config: GatewayConfig, keys: KeyRing) -> Iterator[HeldStore]:
    root = Path(config.state_dir)
    for worker in sorted(root.glob("worker-*/held")):
        try:
            store = HeldStore(worker, keys.derive("held"), config.held.max_bytes)
        except SpoolError as exc:
            raise HeldToolError(str(exc)) from None
        try:
            yield store
        finally:
            store.close()


def held_list(config: GatewayConfig, keys: KeyRing, out: TextIO = sys.stdout) -> int:
    total: Counter[tuple[str, str, str]] = Counter()
    for store in _stores(config, keys):
        total.update(store.counts())
    print("product\tregion\tkind\trecords", file=out)
    for (product, region, kind), n in sorted(total.items()):
        print(f"{product}\t{region}\t{kind}\t{n}", file=out)
    return 0


def held_purge(
    config: GatewayConfig, keys: KeyRing, product: str | None, out: TextIO = sys.stdout
) -> int:
    n = 0
    for store in _stores(config, keys):
        n += store.drop(lambda r: product is None or r.product == product)
    print(f"purged {n} held records", file=out)
    return 0


def held_replay(config: GatewayConfig, keys: KeyRing, out: TextIO = sys.stdout) -> int:
    """Send each held record whose region its policy now names and a sink now serves; the
    rest stay held. Records leave the store only once the sink has them durably."""
    from gateway.service import make_sink

    products = load_dir(Path(config.policies) if config.policies else DEFAULT_DIR)
    sent = kept = 0
    for store in _stores(config, keys):
        by_region: dict[str, list[OutRecord]] = {}
        for r in store.all():
            lp = products.get(r.product)
            allowed = lp is not None and r.region in {x.id for x in lp.policy.regions}
            if allowed and config.sink_for(r.region) is not None:
                by_region.setdefault(r.region, []).append(r)
            else:
                kept += 1
        done: set[str] = set()
        for region, records in sorted(by_region.items()):
            spec = config.sink_for(region)
            assert spec is not None
            sink = make_sink(spec, region, None)
            try:
                sink.open()
                sink.write(records)
            except SinkError as exc:
                raise HeldToolError(f"held replay to {spec.type} sink {region}: {exc}") from None
            finally:
                sink.close()
            done.update(r.msg_id for r in records)
            sent += len(records)
        store.drop(functools.partial(_in, done))
    print(f"replayed {sent} held records; {kept} stay held", file=out)
    return 0
