"""Shared fixtures: a test stack of real services, started once per session.

The test stack has its own ports (RabbitMQ 5682, Kafka 9192/9193) and its own
state dir, so it never meets a developer's default stack on 5672/9092. It shares
the normal jar cache, so the jars are fetched once per machine, not per run.
No skips: when a service cannot start, the tests that need it fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stacktide.config import Config, config_from_mapping

TEST_PORTS = {"rabbitmq_port": 5682, "kafka_port": 9192, "kafka_controller_port": 9193}


def make_config(state_dir: Path, rabbitmq_port: int, kafka_port: int,
                kafka_controller_port: int) -> Config:
    """A config for a stack on the given loopback ports whose state lives in *state_dir*."""
    data: dict[str, Any] = {
        "cells": [{"name": "cell1",
                   "transport_url": f"rabbit://guest:guest@127.0.0.1:{rabbitmq_port}/"}],
        "kafka": {"bootstrap_servers": f"127.0.0.1:{kafka_port}", "topic_prefix": "stacktide"},
        "local": {"state_dir": str(state_dir), "rabbitmq_port": rabbitmq_port,
                  "kafka_port": kafka_port, "kafka_controller_port": kafka_controller_port},
    }
    # The cache dir is left to its default ($STACKTIDE_CACHE or ~/.cache/stacktide).
    return config_from_mapping(data, "<tests/conftest.py>", base=state_dir)


@pytest.fixture(scope="session")
def make_stack_config() -> Callable[..., Config]:
    """The factory of test-stack configs, for tests that need a second stack or odd ports."""
    return make_config


@pytest.fixture(scope="session")
def stack_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The test stack's config (services not necessarily running; use ``stack`` for that)."""
    return make_config(tmp_path_factory.mktemp("stack"), **TEST_PORTS)


@pytest.fixture(scope="session")
def stack(stack_config: Config) -> Iterator[Config]:
    """The test stack, up: RabbitMQ and Kafka answering, topics and jars in place."""
    from stacktide.local import down, up

    try:
        up(stack_config)
        yield stack_config
    finally:
        down(stack_config)
