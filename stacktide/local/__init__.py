"""The embedded default stack: a private RabbitMQ node, a KRaft Kafka broker, the JVM jars."""

from stacktide.local.command import ServiceStatus, StackStatus, down, status, up

__all__ = ["ServiceStatus", "StackStatus", "down", "status", "up"]
