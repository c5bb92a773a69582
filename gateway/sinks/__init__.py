"""Sinks: where accepted records go (file, mqtt, nats), plus the spooled wrapper."""
