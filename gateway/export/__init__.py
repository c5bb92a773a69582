"""Exports of the policies for other tools: `fides` (a Fides system manifest)."""
