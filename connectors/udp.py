"""The bridge's UDP receiver: statsd lines in, one aggregated record per series and window out.

One thread reads the socket and folds every datagram into the current window
(:class:`~connectors.udp_aggregate.Aggregator`); every ``udp.flush_interval_s`` the window
is produced to ``<prefix>.samples``, keyed by host (CONTRACT.md §1). UDP is lossy by design:
what the kernel drops when the socket buffer is full is counted by the kernel (read with
:func:`socket_drops`), malformed lines are counted here, neither stops the receiver.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from confluent_kafka import Producer

from connectors.udp_aggregate import Aggregator, Window
from stacktide.config import KafkaConfig, UdpConfig
from stacktide.schema import SampleRecord

log = logging.getLogger(__name__)

Sink = Callable[[Sequence[SampleRecord]], None]
MAX_DATAGRAM = 65535
SO_RCVBUFFORCE = 33  # Linux <asm-generic/socket.h>; Python's socket module does not name it


class SampleProducer:
    """Writes sample records to ``<prefix>.samples``; shared by the receiver and the agent's
    direct mode. Samples are measurements, not commands: a write that fails after
    librdkafka's retries is counted (``failed``) and logged, never retried forever."""

    def __init__(self, kafka: KafkaConfig, client_id: str) -> None:
        self.topic = kafka.topic("samples")
        self.failed = 0
        self._producer = Producer({
            "bootstrap.servers": kafka.bootstrap_servers, "client.id": client_id,
            "linger.ms": 50, "compression.type": "lz4", "enable.idempotence": True,
            "queue.buffering.max.messages": 1_000_000, "message.timeout.ms": 120_000,
        })

    def _delivered(self, err: object, _msg: object) -> None:
        if err is not None:
            self.failed += 1
            log.warning("event=sample_write_failed topic=%s error=%s", self.topic, err)

    def __call__(self, records: Sequence[SampleRecord]) -> None:
        produce = self._producer.produce
        for r in records:
            while True:
                try:
                    produce(self.topic, r.to_json(), r.kafka_key(), on_delivery=self._delivered)
                    break
                except BufferError:
                    self._producer.poll(0.1)
        self._producer.poll(0)

    def close(self, timeout_s: float = 30.0) -> int:
        """Wait for outstanding writes; returns how many are still not confirmed."""
        return int(self._producer.flush(timeout_s))


def open_socket(config: UdpConfig) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET, socket.SOCK_DGRAM)
    try:  # with CAP_NET_ADMIN the buffer may exceed net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, config.rcvbuf_bytes)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, config.rcvbuf_bytes)
    sock.bind((config.host, config.port))
    return sock


def socket_drops(sock: socket.socket) -> int:
    """The kernel's count of datagrams dropped on *sock* (its buffer was full), from /proc/net."""
    inode = os.fstat(sock.fileno()).st_ino
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name, encoding="ascii") as f:
                next(f)
                for row in f:
                    cols = row.split()
                    if int(cols[9]) == inode:
                        return int(cols[-1])
        except FileNotFoundError:
            continue
    return 0


class UdpReceiver:
    """Receive, aggregate, flush to *sink* until :meth:`stop`; the last window is flushed too.

    The receiving thread only swaps the window out (:meth:`Aggregator.swap`); records are
    built and produced on a flusher thread, so that the socket is read during a flush too
    (a flush of many series takes longer than a socket buffer of datagrams lasts)."""

    def __init__(self, config: UdpConfig, sink: Sink,
                 close: Callable[[float], object] | None = None) -> None:
        self.config, self.sink, self._close = config, sink, close
        self.aggregator = Aggregator(config.max_series)
        self.sock = open_socket(config)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self.stop_event = threading.Event()
        self.flushes = 0
        self._thread: threading.Thread | None = None
        self._windows: queue.Queue[Window | None] = queue.Queue()
        self._flusher = threading.Thread(target=self._flush_loop, name="udp-flusher", daemon=True)

    def start(self) -> UdpReceiver:
        self._thread = threading.Thread(target=self.run, name="udp-receiver", daemon=True)
        self._flusher.start()
        self._thread.start()
        log.info("event=udp_listening host=%s port=%d", *self.address)
        return self

    def run(self) -> None:
        interval = self.config.flush_interval_s
        sock, add = self.sock, self.aggregator.add_datagram
        next_flush = time.monotonic() + interval
        sock.settimeout(min(interval, 0.5))
        try:
            while not self.stop_event.is_set():
                try:
                    data = sock.recv(MAX_DATAGRAM)
                except TimeoutError:
                    pass
                else:
                    add(data, time.time())
                if time.monotonic() >= next_flush:
                    self.flush()
                    next_flush += interval
        finally:
            self.flush()

    def flush(self) -> None:
        """Hand the current window to the flusher thread (cheap: a swap of dicts)."""
        self._windows.put(self.aggregator.swap(datetime.now(UTC)))

    def _flush_loop(self) -> None:
        while (window := self._windows.get()) is not None:
            records = self.aggregator.records(window)
            self.flushes += 1
            if records:
                try:
                    self.sink(records)
                except Exception:  # a sink failure loses this window only, never the receiver
                    log.exception("event=udp_flush_failed records=%d", len(records))

    def drops(self) -> int:
        return socket_drops(self.sock)

    def stop(self, timeout_s: float = 30.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._windows.put(None)
        if self._flusher.is_alive():
            self._flusher.join(timeout_s)
        s = self.aggregator.stats
        log.info("event=udp_stopped datagrams=%d lines=%d malformed=%d records=%d kernel_drops=%d",
                 s.datagrams, s.lines, s.malformed, s.records, self.drops())
        self.sock.close()
        if self._close is not None:
            self._close(timeout_s)
