"""``stacktide capture``: record live notification traffic of any cell to a ``.jsonl`` capture.

It must not disturb anyone: each cell gets a queue of its own — server-named,
exclusive, auto-delete — bound to the configured exchanges x topics x priorities.
RabbitMQ gives every bound queue its own copy, so the bridge's queues, Ceilometer's
and oslo's default ``notifications.*`` queues still get every message, and the
capture queue disappears with the connection (a crash leaves nothing behind).
Lines are :class:`~stacktide.schema.CapturedMessage` (CONTRACT.md §2), properties
included, so ``stacktide replay`` can publish them back exactly.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import pika

from stacktide.config import CellConfig, Config
from stacktide.errors import StacktideError
from stacktide.schema import CapturedMessage
from stacktide.transport import redact

log = logging.getLogger(__name__)

PROPERTY_NAMES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
                  "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
                  "user_id", "app_id", "cluster_id")
PREFETCH = 1000  # bounds what the broker pushes ahead of the file writes


class CaptureError(StacktideError):
    """A cell could not be captured (broker unreachable, exchange refused …)."""


class Progress:
    """One ``\\r``-rewritten line on a terminal (count, total, rate); silent when not a TTY."""

    def __init__(self, what: str, total: int | None = None, stream: TextIO | None = None,
                 enabled: bool | None = None, interval: float = 0.2) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.what, self.total, self.interval = what, total, interval
        self.started = self._shown = time.monotonic()

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._shown < self.interval):
            return
        self._shown = now
        rate = done / max(now - self.started, 1e-9)
        bar = f"{done:,}"
        if self.total:
            filled = min(30, 30 * done // self.total)
            bar = f"[{'#' * filled:.<30}] {bar}/{self.total:,} {100 * done // self.total:3d}%"
        self.stream.write(f"\r{self.what} {bar} {rate:,.0f} msg/s ")
        self.stream.flush()

    def close(self, done: int) -> None:
        if self.enabled:
            self.update(done, force=True)
            self.stream.write("\n")
            self.stream.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help=".jsonl file to write ('-': standard output)")
    parser.add_argument("--cell", action="append", default=None,
                        help="capture this cell (repeatable; default: every cell)")
    parser.add_argument("--count", type=int, default=0, help="stop after N messages (0: no limit)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop after S seconds (0: until SIGINT or SIGTERM)")


def json_safe(value: Any) -> Any:
    """AMQP header values as JSON: bytes as text (surrogate escapes), times and decimals as text."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (datetime.datetime, Decimal)):
        return str(value)
    return value


def message_properties(props: pika.BasicProperties) -> dict[str, Any]:
    """The properties the message carried (only those set), as JSON values."""
    return {name: json_safe(getattr(props, name)) for name in PROPERTY_NAMES
            if getattr(props, name, None) is not None}


class Recorder:
    """Captures cells into *out*, one thread and connection per cell, until stopped.

    ``start()`` returns once every cell's queue is bound (traffic from then on is
    captured) and raises :class:`CaptureError` when a cell cannot be; ``stop()`` may
    be called from any thread or a signal handler; ``close()`` waits for the cells.
    """

    def __init__(self, config: Config, out: TextIO, cells: Sequence[str] | None = None,
                 count: int = 0, progress: Progress | None = None) -> None:
        known = {c.name: c for c in config.cells}
        unknown = [n for n in cells or () if n not in known]
        if unknown:
            raise CaptureError(f"no cell named {', '.join(unknown)} in the configuration "
                               f"(cells: {', '.join(known)})")
        self.cells = [known[n] for n in cells] if cells else list(config.cells)
        self.out, self.limit = out, count
        self.progress = progress or Progress("capture", count or None, enabled=False)
        self.captured = 0
        self.errors: list[str] = []
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, timeout: float = 60.0) -> None:
        for cell in self.cells:
            ready = threading.Event()
            thread = threading.Thread(target=self._run_cell, args=(cell, ready),
                                      name=f"capture-{cell.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
            if not ready.wait(timeout):
                self.errors.append(f"cell {cell.name}: not bound within {timeout:.0f} s")
            if self.errors:
                self.close()
                raise CaptureError("; ".join(self.errors))

    def stop(self) -> None:
        self.stopped.set()

    def close(self) -> int:
        self.stop()
        for thread in self._threads:
            thread.join(timeout=30)
        with self._lock:
            self.out.flush()
        self.progress.close(self.captured)
        return self.captured

    def flush(self) -> None:
        with self._lock:
            self.out.flush()

    def _write(self, message: CapturedMessage) -> None:
        with self._lock:
            if self.limit and self.captured >= self.limit:
                return
            self.out.write(message.to_line() + "\n")
            self.captured += 1
            self.progress.update(self.captured)
            if self.captured == self.limit:
                self.stopped.set()

    def _run_cell(self, cell: CellConfig, ready: threading.Event) -> None:
        from connectors.bridge import connection_parameters

        try:
            connection = pika.BlockingConnection(connection_parameters(cell))
            try:
                channel, queue = bind(connection, cell)
                last: list[int] = []

                def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
                    self._write(CapturedMessage.from_wire(
                        cell.name, method.exchange, method.routing_key, body,
                        message_properties(props)))
                    last[:] = [method.delivery_tag]

                channel.basic_consume(queue, on_message_callback=on_message)
                ready.set()
                log.info("cell=%s capturing from %s", cell.name, cell.transport.redacted())
                while not self.stopped.is_set():
                    connection.process_data_events(time_limit=0.1)
                    if last:
                        channel.basic_ack(last.pop(), multiple=True)
            finally:
                if connection.is_open:
                    connection.close()
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.errors.append(f"cell {cell.name}: {redact(str(exc)) or type(exc).__name__}")
            log.error("cell=%s capture stopped: %s", cell.name, self.errors[-1])
        finally:
            ready.set()


def bind(connection: pika.BlockingConnection, cell: CellConfig) -> tuple[Any, str]:
    """A channel and a new exclusive queue bound to all of *cell*'s routing keys.

    Exchanges are declared as the cell's notifiers declare them (topic, durable with the
    cell's ``durable_exchanges``), so
    traffic that starts after the capture is not missed; one that exists with other
    attributes refuses that declaration, and is used as it is.
    """
    channel = connection.channel()
    for exchange in cell.exchanges:
        try:
            channel.exchange_declare(exchange, exchange_type="topic",
                                     durable=cell.durable_exchanges)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 406:  # PRECONDITION_FAILED: there, but not as oslo makes it
                raise
            channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    for exchange in cell.exchanges:
        for topic in cell.topics:
            for priority in cell.priorities:
                channel.queue_bind(queue, exchange, routing_key=f"{topic}.{priority}")
    channel.basic_qos(prefetch_count=PREFETCH)
    return channel, queue


def run(args: argparse.Namespace, config: Config) -> int:
    to_stdout = args.output == "-"
    out = sys.stdout if to_stdout else Path(args.output).open("w", encoding="utf-8")  # noqa: SIM115
    # The count goes to stderr, unless the capture itself scrolls by on that terminal.
    progress = Progress("capture", args.count or None,
                        enabled=False if to_stdout and sys.stdout.isatty() else None)
    # From STACKTIDE_CELL the default is one string: "cell1" or "cell1,cell2".
    cells = args.cell.split(",") if isinstance(args.cell, str) else args.cell
    recorder = Recorder(config, out, cells, args.count, progress)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        recorder.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        recorder.start()
        deadline = time.monotonic() + args.duration if args.duration > 0 else None
        while not recorder.stopped.wait(0.5):
            recorder.flush()
            if deadline is not None and time.monotonic() >= deadline:
                break
            if len(recorder.errors) == len(recorder.cells):
                break  # every cell failed: nothing left to capture
        count = recorder.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not to_stdout:
            out.close()
    print(f"captured={count}", file=sys.stderr if to_stdout else sys.stdout)
    for error in recorder.errors:
        print(f"stacktide capture: {error}", file=sys.stderr)
    return 1 if recorder.errors else 0
