"""A bounded ``jobs run`` resuming from a checkpoint waits until every job's consumer group
committed the topics' end offsets; a Kafka that does not answer meanwhile (restarting) is
"not yet", asked again through new Kafka clients, never the end of the run."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from jobs.command import CatchUp
from stacktide.config import config_from_mapping


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_kafka_that_does_not_answer_is_not_caught_up_yet(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = config_from_mapping(
        {"cells": [{"name": "cell1", "transport_url": "rabbit://guest:guest@127.0.0.1:5672/"}],
         "kafka": {"bootstrap_servers": f"127.0.0.1:{closed_port()}"}}, "<test>", base=tmp_path)
    read_all = CatchUp(config, {"notifications": {0: 5, 1: 0}}, timeout_s=1.0)
    with caplog.at_level(logging.WARNING, logger="jobs.command"):
        assert read_all() is False
        assert read_all.offsets is None  # the next call asks through new clients
        assert read_all() is False
    assert [r.getMessage().split(" ")[0] for r in caplog.records] == [
        "event=committed_offsets_unknown"] * 2
