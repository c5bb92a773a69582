"""Shared fixtures: real brokers started per test (see tests/servers.py)."""

from tests.servers import mosquitto, nats_server, sink_mosquitto

__all__ = ["mosquitto", "nats_server", "sink_mosquitto"]
