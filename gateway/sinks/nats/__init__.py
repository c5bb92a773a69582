"""NATS JetStream sink: durable once every PubAck arrived, msg-id dedupe."""

from gateway.sinks.nats.config import NatsSinkConfig
from gateway.sinks.nats.sink import NatsSink

__all__ = ["NatsSink", "NatsSinkConfig"]
