"""Every corpus sample through the real bridge, in both oslo wire formats, out of Kafka once.

tests/conformance/test_corpus.py holds the parser to the corpus; this holds the
whole forwarding path to it: the samples are published on RabbitMQ as their
senders would (connectors.replay), the real Bridge consumes its own queues and
writes Kafka, and ``<prefix>.notifications`` is read back to its end. Each sample
must be there exactly once, normalized, with the right ids and Kafka key. The
event types covered are compared with the corpus's (none silently skipped) and
listed in the terminal summary (and printed, for ``-s``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.bridge import Bridge
from connectors.replay import publish
from stacktide.config import Config
from stacktide.corpus import iter_samples
from stacktide.local.kafka import ensure_topics
from stacktide.schema import CapturedMessage, Envelope
from tests.helpers import Record, isolated, read_topic

log = logging.getLogger(__name__)

CORPUS_SIZE = 511
COVERED: dict[str, list[str]] = {}  # envelope -> event types that came through


class CoverageSummary:
    """A plugin registered by the test run: the covered event types in the terminal summary."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not COVERED:
            return
        terminalreporter.section("corpus event types through the bridge")
        for envelope, types in sorted(COVERED.items()):
            terminalreporter.write_line(f"envelope {envelope}: {len(types)} event types: "
                                        f"{', '.join(types)}")


@pytest.fixture(scope="module")
def coverage(request: pytest.FixtureRequest) -> Iterator[dict[str, list[str]]]:
    manager = request.config.pluginmanager
    if not manager.has_plugin("stacktide-bridge-coverage"):
        manager.register(CoverageSummary(), "stacktide-bridge-coverage")
    yield COVERED


@pytest.mark.stack
@pytest.mark.parametrize("envelope", ["1.0", "2.0"])
def test_every_sample_comes_out_of_kafka_once(stack: Config, envelope: str,
                                              coverage: dict[str, list[str]]) -> None:
    samples = list(iter_samples(envelope=envelope))
    assert len(samples) == CORPUS_SIZE and {s.envelope for s in samples} == {envelope}
    # Every exchange the samples use (the corpus has a swift sample besides the defaults).
    config = isolated(stack, f"conf{envelope[0]}", {s.exchange for s in samples})
    ensure_topics(config)
    cell = config.cells[0].name

    bridge = Bridge(config)
    bridge.declare()  # RabbitMQ routes only to queues bound before the publish
    messages = [CapturedMessage.from_wire(cell, s.exchange, s.routing_key, s.body) for s in samples]
    assert publish(config, messages) == len(samples)
    bridge.run(idle_exit=3.0)
    stats = bridge.cells[0].stats
    assert (stats.received, stats.forwarded, stats.dead_lettered) == (len(samples), len(samples), 0)

    records = read_topic(config, "notifications")
    assert read_topic(config, "dead-letters") == []
    by_id: dict[str, list[tuple[Record, Envelope]]] = defaultdict(list)
    for record in records:
        normalized = Envelope.from_json(record.value)
        by_id[normalized.message_id].append((record, normalized))
    assert len(records) == len(samples)

    covered: set[str] = set()
    for s in samples:
        found = by_id.get(s.message_id, [])
        assert len(found) == 1, f"{s.source}: {len(found)} records with message_id {s.message_id}"
        record, got = found[0]
        assert (got.event_type, got.priority, got.cell, got.exchange, got.routing_key) == (
            s.event_type, s.priority, cell, s.exchange, s.routing_key), s.source
        assert (got.format, got.instance_id) == (s.fmt, s.instance_id), s.source
        assert record.key == (s.instance_id or s.message_id).encode(), s.source
        covered.add(got.event_type)

    corpus_types = {s.event_type for s in samples}
    assert covered == corpus_types, f"not covered: {sorted(corpus_types - covered)}"
    coverage[envelope] = sorted(covered)
    listing = ", ".join(coverage[envelope])
    print(f"\nenvelope {envelope}: {len(covered)} event types covered: {listing}")
    log.info("envelope=%s event_types_covered=%d: %s", envelope, len(covered), listing)
