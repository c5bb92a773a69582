from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.source import Delivery, MqttSource

__all__ = ["Delivery", "MqttSource", "MqttSourceConfig"]
