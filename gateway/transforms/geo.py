"""IP addresses leave only as coarse geolocation: country and continent, from an offline table.

Private, loopback, link-local and other non-global addresses carry no geolocation at all.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

import iptocc

from gateway.transforms.continents import continent_of


def coarse_ip(value: str) -> dict[str, str] | None:
    """`{"country": "US", "continent": "NA"}`, or None when the address has no public location.
    A dict of its own each time: records must not share the cached one."""
    c = _coarse(value)
    return dict(c) if c is not None else None


@lru_cache(maxsize=4096)
def _coarse(value: str) -> dict[str, str] | None:
    # Cached: a fleet reports few distinct addresses, and the cache holds only geo results
    # keyed by addresses already in memory.
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:81.2.69.142
        ip = ip.ipv4_mapped
    if not ip.is_global:
        return None
    cc = iptocc.country_code(str(ip))
    if not cc:
        return None
    if cc == "EU":  # registry blocks assigned to Europe as a whole: no country to give
        return {"continent": "EU"}
    out = {"country": cc}
    cont = continent_of(cc)
    if cont:
        out["continent"] = cont
    return out
