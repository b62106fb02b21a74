"""``stacktide replay``: publish recorded or sample traffic onto RabbitMQ as oslo would.

Messages go to the services' topic exchanges with their captured routing keys and
AMQP properties; like oslo's notifier, the publisher declares the exchange (topic, durable only
with the cell's ``durable_exchanges``, as oslo's ``amqp_durable_queues``) and the
default queue named after the routing key (durable alike), so traffic piles
up there as in a real deployment (tests use that to show the bridge never takes
from queues other consumers read).

Lossless and fast: each message is published ``mandatory`` in confirm mode with up
to ``window`` confirms in flight on an asynchronous connection: ~17-19k msg/s here,
against ~1.2k waiting for each confirm, ~11.6k with a transaction every 1,000 and
~23k with no confirms at all. A nack, a return or a closed channel raises
:class:`ReplayError`: nothing vanishes silently.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path
from typing import Any

import pika
from pika.adapters.select_connection import IOLoop, SelectConnection

from connectors.capture import PROPERTY_NAMES, Progress
from stacktide.config import CellConfig, Config
from stacktide.errors import StacktideError
from stacktide.schema import CapturedMessage
from stacktide.transport import redact

log = logging.getLogger(__name__)

OSLO_DEFAULTS = {"content_type": "application/json", "content_encoding": "utf-8"}
# What oslo.messaging 18.3 (kombu 5.7) sets on a notification, as `stacktide capture` saw it.
OSLO_PROPERTIES = {**OSLO_DEFAULTS, "headers": {}, "delivery_mode": 2, "priority": 0}
WINDOW = 5000  # confirms outstanding; 1,000 gave ~17k msg/s, 5,000 ~19k, 20,000 no more


class ReplayError(StacktideError):
    """A message was nacked or returned, or a cell's broker refused or dropped us."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("captures", nargs="*", type=Path, help=".jsonl capture files")
    parser.add_argument("--corpus", action="store_true", help="replay the sample corpus")
    parser.add_argument("--cell", default=None, help="publish to this cell (default: the first)")
    parser.add_argument("--keep-cells", action="store_true",
                        help="publish each captured message to the cell it was captured from")
    parser.add_argument("--envelope", choices=["1.0", "2.0", "mixed"], default="2.0", help="corpus format")
    parser.add_argument("--seed", type=int, default=0,
                        help="corpus ids and times; the same seed replays the same messages")
    parser.add_argument("--speed", type=float, default=0.0,
                        help="messages per second; 0 = as fast as confirms allow")
    parser.add_argument("--no-declare", action="store_true",
                        help="publish onto the exchanges as they are: declare neither them nor "
                             "oslo's default queues (an unroutable message then fails the replay)")


def corpus_messages(cell: str, envelope: str = "2.0", seed: int = 0) -> Iterator[CapturedMessage]:
    """The corpus as oslo would send it; another *seed* gives other ids, i.e. new traffic."""
    from stacktide.corpus import iter_samples

    for s in iter_samples(envelope=envelope, seed=seed):
        yield CapturedMessage.from_wire(cell, s.exchange, s.routing_key, s.body,
                                        {**OSLO_PROPERTIES, "headers": {}})


def capture_messages(path: Path) -> Iterator[CapturedMessage]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield CapturedMessage.from_line(line)


def amqp_properties(message: CapturedMessage) -> pika.BasicProperties:
    """The captured properties; oslo's content type and encoding when the capture has none."""
    props = {**OSLO_DEFAULTS, **{k: v for k, v in message.properties.items()
                                 if k in PROPERTY_NAMES and v is not None}}
    return pika.BasicProperties(**props)


class _Cell:
    """One cell's connection and confirm-mode channel on the replay's shared I/O loop."""

    def __init__(self, replay: _Replay, cell: CellConfig) -> None:
        from connectors.bridge import connection_parameters

        self.replay, self.name = replay, cell.name
        self.durable = cell.durable_exchanges  # oslo's amqp_durable_queues: exchange and queue
        self.channel: Any = None
        self.connection: Any = None
        self.ready = False  # open and not in the middle of declaring
        self.declared: set[tuple[str, str]] = set()
        self.unconfirmed: deque[int] = deque()
        self.confirmed: set[int] = set()
        self.published = 0
        SelectConnection.create_connection(connection_parameters(cell), self._connected,
                                           custom_ioloop=replay.ioloop)

    def _connected(self, result: Any) -> None:
        if not isinstance(result, pika.connection.Connection):
            self.replay.fail(f"cell {self.name}: cannot connect: {redact(str(result))}")
            return
        self.connection = result
        result.add_on_close_callback(self._closed)
        if self.replay.error is not None:
            result.close()
            return
        result.channel(on_open_callback=self._channel_open)

    def _channel_open(self, channel: Any) -> None:
        self.channel = channel
        channel.add_on_close_callback(self._channel_closed)
        channel.add_on_return_callback(self._returned)
        channel.confirm_delivery(self._confirm, callback=lambda _frame: self._resume())

    def _resume(self, _frame: Any = None) -> None:
        self.ready = True
        self.replay.pump()

    def declare(self, exchange: str, routing_key: str) -> None:
        """Exchange, default queue and binding, as oslo's notifier declares them."""
        self.ready = False
        self.declared.add((exchange, routing_key))
        ch = self.channel
        ch.exchange_declare(exchange, exchange_type="topic", durable=self.durable, callback=lambda _f:
            ch.queue_declare(routing_key, durable=self.durable, callback=lambda _g:
                ch.queue_bind(routing_key, exchange, routing_key, callback=self._resume)))

    def publish(self, message: CapturedMessage) -> None:
        self.channel.basic_publish(message.exchange, message.routing_key, message.body_bytes(),
                                   amqp_properties(message), mandatory=True)
        self.published += 1
        self.unconfirmed.append(self.published)

    def _confirm(self, frame: Any) -> None:
        method = frame.method
        if self.replay.error is not None:
            return  # failing already: what follows a return or a nack is not a success
        if isinstance(method, pika.spec.Basic.Nack):
            upto = " and those before" if method.multiple else ""
            self.replay.fail(f"cell {self.name}: the broker nacked message #{method.delivery_tag}"
                             f"{upto} of this connection")
            return
        before = len(self.unconfirmed)
        if method.multiple:
            while self.unconfirmed and self.unconfirmed[0] <= method.delivery_tag:
                self.confirmed.discard(self.unconfirmed.popleft())
        else:
            self.confirmed.add(method.delivery_tag)
        while self.unconfirmed and self.unconfirmed[0] in self.confirmed:
            self.confirmed.discard(self.unconfirmed.popleft())
        self.replay.confirmed(before - len(self.unconfirmed))

    def _returned(self, _channel: Any, method: Any, _props: Any, _body: bytes) -> None:
        self.replay.fail(f"cell {self.name}: message returned as unroutable ({method.reply_code} "
                         f"{method.reply_text}) exchange={method.exchange!r} "
                         f"routing_key={method.routing_key!r}")

    def _channel_closed(self, _channel: Any, reason: Exception) -> None:
        if not self.replay.closing:
            self.replay.fail(f"cell {self.name}: the broker closed the channel: {reason}")

    def _closed(self, _connection: Any, reason: Exception) -> None:
        self.ready = False
        self.connection = None
        if not self.replay.closing:
            self.replay.fail(f"cell {self.name}: connection lost: {redact(str(reason))}")
        self.replay.maybe_stop()


class _Replay:
    """Feeds messages to their cells, at most ``window`` unconfirmed, paced to ``speed``."""

    def __init__(self, config: Config, messages: Iterable[CapturedMessage], target: str | None,
                 speed: float, window: int, declare: bool, progress: Progress) -> None:
        self.cells_config = {c.name: c for c in config.cells}
        self.target, self.speed, self.window, self.declare = target, speed, window, declare
        self.progress = progress
        self.messages = iter(messages)
        self.next: CapturedMessage | None = None
        self.ioloop = IOLoop()
        self.cells: dict[str, _Cell] = {}
        self.sent = self.done = self.unconfirmed = 0
        self.error: str | None = None
        self.closing = self.timer = False
        self.started = time.monotonic()

    def run(self) -> int:
        self.next = next(self.messages, None)
        self.ioloop.add_callback_threadsafe(self.pump)
        try:
            self.ioloop.start()
        finally:
            self.ioloop.close()
        self.progress.close(self.done)
        if self.error is not None:
            raise ReplayError(f"{self.error} (after {self.done} confirmed of {self.sent} sent)")
        return self.done

    def pump(self) -> None:
        """Publish until blocked (connecting, declaring, window full, not yet due) or done."""
        self.timer = False
        while self.next is not None and self.error is None:
            m = self.next
            cell = self._cell(self.target or m.cell)
            if cell is None or not cell.ready:
                return  # it calls pump() once open
            if self.declare and (m.exchange, m.routing_key) not in cell.declared:
                cell.declare(m.exchange, m.routing_key)
                return
            if self.unconfirmed >= self.window:
                return  # confirmed() calls pump()
            if self.speed > 0:
                delay = self.started + self.sent / self.speed - time.monotonic()
                if delay > 0:
                    if not self.timer:
                        self.timer = True
                        self.ioloop.call_later(delay, self.pump)
                    return
            cell.publish(m)
            self.sent += 1
            self.unconfirmed += 1
            self.next = next(self.messages, None)
        if self.error is None and self.unconfirmed == 0:
            self.close()

    def confirmed(self, count: int) -> None:
        self.unconfirmed -= count
        self.done += count
        self.progress.update(self.done)
        self.pump()

    def _cell(self, name: str) -> _Cell | None:
        if name not in self.cells:
            if name not in self.cells_config:
                self.fail(f"cell {name!r} is not in the configuration "
                          f"(cells: {', '.join(self.cells_config)})")
                return None
            self.cells[name] = _Cell(self, self.cells_config[name])
        return self.cells[name]

    def fail(self, error: str) -> None:
        if self.error is None:
            self.error = error
        self.close()

    def close(self) -> None:
        self.closing = True
        for cell in self.cells.values():
            if cell.connection is not None and cell.connection.is_open:
                cell.connection.close()
        self.maybe_stop()

    def maybe_stop(self) -> None:
        if self.closing and all(c.connection is None or c.connection.is_closed
                                for c in self.cells.values()):
            self.ioloop.stop()


def publish(config: Config, messages: Iterable[CapturedMessage], cell: str | None = None,
            speed: float = 0.0, *, keep_cells: bool = False, declare: bool = True,
            window: int = WINDOW, total: int | None = None,
            progress: bool | None = None) -> int:
    """Publish *messages*, all confirmed, and return how many; raises :class:`ReplayError`.

    Target: *cell*, else each message's own cell with *keep_cells*, else the first cell.
    *speed* is messages per second (0: as fast as *window* confirms in flight allow).
    *progress*: a progress line on stderr (default: when stderr is a terminal).
    """
    target = None if keep_cells and cell is None else (cell or config.cells[0].name)
    total = len(messages) if total is None and isinstance(messages, Sized) else total
    replay = _Replay(config, messages, target, speed, max(1, window), declare,
                     Progress("replay", total, enabled=progress))
    count = replay.run()
    log.info("published %d messages to %s", count, target or "their own cells")
    return count


def run(args: argparse.Namespace, config: Config) -> int:
    if not args.corpus and not args.captures:
        print("stacktide replay: give capture files, --corpus, or both", file=sys.stderr)
        return 2
    corpus = list(corpus_messages(args.cell or config.cells[0].name, args.envelope, args.seed)
                  if args.corpus else ())
    total = len(corpus)
    for path in args.captures:  # counted first, for the progress bar
        with path.open(encoding="utf-8") as f:
            total += sum(1 for line in f if line.strip())
    sources = [corpus, *(capture_messages(p) for p in args.captures)]
    count = publish(config, itertools.chain(*sources), args.cell, args.speed,
                    keep_cells=args.keep_cells, declare=not args.no_declare, total=total)
    print(f"published={count}")
    return 0
