"""`gateway report`: a self-contained HTML compliance report per product from a metrics scrape
and the policy files (declarations and counts, never a message value)."""

from gateway.report.render import render, write_report
from gateway.report.scrape import ReportError, Scrape, parse, read_source

__all__ = ["ReportError", "Scrape", "parse", "read_source", "render", "write_report"]
