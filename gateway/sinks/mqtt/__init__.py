"""MQTT sink: QoS1 publish to a regional broker, durable once every PUBACK arrived."""

from gateway.sinks.mqtt.config import MqttSinkConfig, MqttTlsConfig
from gateway.sinks.mqtt.sink import MqttSink

__all__ = ["MqttSink", "MqttSinkConfig", "MqttTlsConfig"]
