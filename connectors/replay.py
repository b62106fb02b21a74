"""``stacktide replay``: publish recorded or sample traffic onto RabbitMQ as oslo would.

The messages go to the services' topic exchanges with the routing keys oslo uses,
and, like oslo's notifier, the publisher declares the default queue named after
the routing key (``notifications.info`` …), so traffic piles up there as in a
real deployment — which is also how tests check that the bridge never takes
messages from the queues other consumers read. Publisher confirms make the
replay itself lossless.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pika

from stacktide.config import Config
from stacktide.schema import CapturedMessage

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("captures", nargs="*", type=Path, help=".jsonl capture files")
    parser.add_argument("--corpus", action="store_true", help="replay the sample corpus")
    parser.add_argument("--cell", default=None, help="publish to this cell (default: the first)")
    parser.add_argument("--envelope", choices=["1.0", "2.0", "mixed"], default="2.0",
                        help="oslo wire format for corpus samples")
    parser.add_argument("--seed", type=int, default=0,
                        help="corpus ids and times; the same seed replays the same messages")
    parser.add_argument("--speed", type=float, default=0.0,
                        help="messages per second; 0 = as fast as confirms allow")


def corpus_messages(cell: str, envelope: str = "2.0", seed: int = 0) -> Iterator[CapturedMessage]:
    """The corpus as wire messages; another *seed* gives other ids, i.e. new traffic."""
    from stacktide.corpus import iter_samples

    for s in iter_samples(envelope=envelope, seed=seed):
        yield CapturedMessage.from_wire(cell, s.exchange, s.routing_key, s.body)


def capture_messages(path: Path) -> Iterator[CapturedMessage]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield CapturedMessage.from_line(line)


def publish(config: Config, messages: Iterable[CapturedMessage], cell: str | None = None,
            speed: float = 0.0) -> int:
    """Publish *messages* to *cell*'s broker (or each message's own cell); returns the count."""
    from connectors.bridge import connection_parameters

    cells = {c.name: c for c in config.cells}
    target = cells[cell] if cell else config.cells[0]
    connection = pika.BlockingConnection(connection_parameters(target))
    channel = connection.channel()
    channel.confirm_delivery()
    declared: set[tuple[str, str]] = set()
    count = 0
    started = time.monotonic()
    try:
        for m in messages:
            if (m.exchange, m.routing_key) not in declared:
                channel.exchange_declare(m.exchange, exchange_type="topic", durable=False)
                channel.queue_declare(m.routing_key)
                channel.queue_bind(m.routing_key, m.exchange, routing_key=m.routing_key)
                declared.add((m.exchange, m.routing_key))
            props = pika.BasicProperties(
                content_type=m.properties.get("content_type", "application/json"),
                content_encoding=m.properties.get("content_encoding", "utf-8"),
                delivery_mode=m.properties.get("delivery_mode"),
            )
            channel.basic_publish(m.exchange, m.routing_key, m.body_bytes(), props)
            count += 1
            if speed > 0:
                delay = started + count / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    finally:
        connection.close()
    log.info("published %d messages to cell=%s", count, target.name)
    return count


def run(args: argparse.Namespace, config: Config) -> int:
    cell = args.cell or config.cells[0].name
    total = 0
    if args.corpus:
        total += publish(config, corpus_messages(cell, args.envelope, args.seed), cell, args.speed)
    for path in args.captures:
        total += publish(config, capture_messages(path), cell, args.speed)
    print(f"published={total}")
    return 0
