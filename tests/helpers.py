"""Helpers shared by the tests that run on the real stack.

The session's stack is shared by every test, so each test works in a namespace of
its own (:func:`isolated`: topics, queues, Iceberg namespace) and, when it needs a
second cell, in a vhost of its own on the same broker (:func:`with_vhost_cell`).
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pika
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors.bridge import connection_parameters
from connectors.wire import parse
from stacktide.catalog import load_catalog
from stacktide.config import CellConfig, Config
from stacktide.local import rabbitmq
from stacktide.local.process import fresh_environment as fresh_environment  # tests import it here
from stacktide.schema import Envelope
from stacktide.simulate.traffic import Traffic


def isolated(config: Config, name: str, exchanges: set[str] | frozenset[str] = frozenset()) -> Config:
    """A config whose topics, queues and Iceberg namespace belong to this test alone.

    *exchanges* are added to every cell's (the corpus uses ``swift`` besides the defaults).
    """
    tag = f"{name}{uuid.uuid4().hex[:6]}"
    cells = tuple(dataclasses.replace(c, exchanges=tuple(sorted({*c.exchanges, *exchanges})))
                  for c in config.cells)
    return dataclasses.replace(
        config,
        cells=cells,
        kafka=dataclasses.replace(config.kafka, topic_prefix=tag),
        bridge=dataclasses.replace(config.bridge, queue_prefix=tag),
        iceberg=dataclasses.replace(config.iceberg, namespace=tag),
        jobs=dataclasses.replace(config.jobs, checkpoint_interval_s=1.0),
    )


def with_vhost_cell(config: Config, name: str, vhost: str | None = None) -> Config:
    """*config* plus a cell *name* on a new vhost of the same broker (another "cell")."""
    vhost = vhost or f"{name}-{uuid.uuid4().hex[:6]}"
    rabbitmq.add_vhost(config, vhost)
    first = config.cells[0]
    cell = dataclasses.replace(first, name=name,
                               transport=dataclasses.replace(first.transport, virtual_host=vhost))
    return dataclasses.replace(config, cells=(*config.cells, cell))


def cell(config: Config, name: str) -> CellConfig:
    return next(c for c in config.cells if c.name == name)


def queue_depth(config: Config, queue: str, cell_name: str | None = None) -> int:
    """Messages ready in *queue* (raises ChannelClosedByBroker when there is no such queue)."""
    target = cell(config, cell_name) if cell_name else config.cells[0]
    conn = pika.BlockingConnection(connection_parameters(target))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def queue_exists(config: Config, queue: str, cell_name: str | None = None) -> bool:
    try:
        queue_depth(config, queue, cell_name)
    except pika.exceptions.ChannelClosedByBroker:
        return False
    return True


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def read_topic(config: Config, name: str, timeout: float = 60.0) -> list[Record]:
    """Every record of topic ``<prefix>.<name>``, up to the end it has when called.

    Reads each partition from its low to its high watermark, so the answer is the
    whole topic (not "whatever arrived within a poll timeout").
    """
    topic = config.kafka.topic(name)
    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records: list[Record] = []
        done = {p: False for p in ends}
        deadline = time.monotonic() + timeout
        while not all(done.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: read {len(records)} records, partitions "
                                   f"{[p for p, d in done.items() if not d]} incomplete")
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            p = msg.partition()
            records.append(Record(p, msg.offset(), msg.key(), msg.value(),
                                  dict(msg.headers() or [])))
            if msg.offset() + 1 >= ends[p]:
                done[p] = True
        return records
    finally:
        consumer.close()


def simulated_envelopes(traffic: Traffic, received: datetime) -> list[Envelope]:
    """The normalized envelopes of simulated *traffic*, in delivery order, as the bridge
    writes them to Kafka (parsed from the wire form the simulator renders)."""
    out = []
    for _, r in traffic.messages:
        m = r.captured()
        env = parse(m.body_bytes(), cell=m.cell, exchange=m.exchange, routing_key=m.routing_key,
                    received=received)
        assert isinstance(env, Envelope), env
        out.append(env)
    return out


def committed(config: Config) -> int:
    """Rows of the archive so far (0 until the job created the table)."""
    catalog, ident = load_catalog(config.iceberg), f"{config.iceberg.namespace}.notifications"
    if not catalog.table_exists(ident):
        return 0
    return int(catalog.load_table(ident).scan(selected_fields=("message_id",)).to_arrow().num_rows)


def wait_for(condition: Any, job: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    """Until *condition*() holds, while *job* runs; its log's tail when it ends or time is up."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert job.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(1.0)
