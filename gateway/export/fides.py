"""`gateway export --format fides`: each product's privacy declarations as a Fides system.

The manifest describes what leaves the gateway, after enforcement: a field the gateway drops
is not declared, an identifier is declared as the pseudonym it leaves as, an IP address as the
country it is coarsened to. Categories map onto the Fideslang default taxonomy; a field that
needs an opt-in toggle is its own declaration, with consent as its legal basis. Written as
JSON, which YAML readers (`fides push`) read as well.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec

from gateway.explain import policy_rows
from gateway.policy.loader import LoadedPolicy
from gateway.policy.model import IDENTIFIERS

# Our closed category vocabulary -> the Fideslang data category of what leaves the gateway.
FIDES_CATEGORY: dict[str, str] = {
    **{c: "user.unique_id.pseudonymous" for c in IDENTIFIERS},
    "network.ip": "user.location.imprecise",
    "network.gateway": "user.location.imprecise",
    "location.precise": "user.location.imprecise",
    "device.model": "user.device",
    "device.firmware": "user.device",
    "device.hardware": "user.device",
    "device.settings": "user.device",
    "device.state": "user.telemetry",
    "device.uptime": "system.operations",
    "device.error": "system.operations",
    "network.rssi": "system.operations",
    "network.netmask": "system.operations",
    "usage.event": "user.behavior",
    "usage.command": "user.behavior",
    "free_text": "user.content.private",
    # secret.* are always dropped: they never reach a declaration.
}
DATA_USE = "essential.service"
DATA_SUBJECTS = ["customer"]


def system(lp: LoadedPolicy) -> dict[str, Any]:
    pol = lp.policy
    groups: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for r in policy_rows(lp):
        # A product whose policy names no region never has a record forwarded.
        if r["action"] == "drop" or not pol.regions:
            continue
        groups[r["kind"], r["consent"]].add(FIDES_CATEGORY[r["category"]])
    declarations = []
    for (kind, toggle), categories in sorted(groups.items()):
        decl: dict[str, Any] = {
            "name": f"{kind}: {pol.kinds[kind].purpose}"  # type: ignore[index]
            + (f" (opt-in: {toggle})" if toggle else ""),
            "data_categories": sorted(categories),
            "data_use": DATA_USE,
            "data_subjects": DATA_SUBJECTS,
        }
        if toggle:
            decl["legal_basis_for_processing"] = "Consent"
        declarations.append(decl)
    regions = [r.id for r in pol.regions]
    where = (
        f"records leave only to the data centres the policy names ({', '.join(regions)})"
        if regions
        else "the policy names no data centre: nothing of this product is forwarded"
    )
    return {
        "fides_key": pol.id.replace("-", "_"),
        "name": pol.name,
        "description": f"{pol.publisher}, as enforced by privacy-gateway: {where}.",
        "system_type": "Service",
        "processes_personal_data": bool(declarations),
        "meta": {
            "policy_text": pol.seed,
            "policy_sha256": lp.hash,
            "regions": regions,
        },
        "privacy_declarations": declarations,
    }


def manifest(policies: dict[str, LoadedPolicy]) -> bytes:
    doc = {"system": [system(policies[p]) for p in sorted(policies)]}
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"
