"""Bridges into Kafka: RabbitMQ notifications of every cell, capture and replay."""
