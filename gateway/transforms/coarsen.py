"""Precise positions leave rounded to the policy's precision (1 decimal place is ~11 km)."""

from __future__ import annotations


def coarsen_position(value: float, precision: int) -> float:
    return round(float(value), precision)
