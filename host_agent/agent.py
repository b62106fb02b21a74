"""The host agent's loop: poll libvirt every interval, send each reading as a statsd line.

A poll that fails (libvirt restarting, socket gone) costs that poll's samples: the agent
reconnects with bounded exponential backoff (``reconnect_initial_s`` doubling up to
``reconnect_max_s``) and carries on; it never exits on a libvirt error. Readings go either
as UDP datagrams to the bridge's receiver (lossy by design, cheap, any statsd tool can
listen) or, with ``target: kafka``, aggregated here and produced to ``<prefix>.samples``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from host_agent.libvirt_source import DomainInfo, LibvirtSource, LibvirtUnavailable
from host_agent.meters import Reading
from stacktide.statsd import encode_line, pack

log = logging.getLogger(__name__)

Send = Callable[[list[bytes]], int]
"""Takes a poll's datagrams, returns how many could not be sent."""


def lines(host: str, readings: Iterable[tuple[DomainInfo, Reading]]) -> list[bytes]:
    """A poll's readings as statsd lines tagged host, instance, device and unit."""
    out = []
    for info, r in readings:
        tags = {"host": host, "instance": info.instance_id}
        if r.device:
            tags["device"] = r.device
        tags["unit"] = r.meter.unit
        out.append(encode_line(r.meter.name, r.value, r.meter.type, tags))
    return out


class UdpSender:
    """Datagrams to one address; a failed ``sendto`` (no route, buffer full) is counted."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.address = (host, port)

    def __call__(self, datagrams: list[bytes]) -> int:
        failed = 0
        for d in datagrams:
            try:
                self.sock.sendto(d, self.address)
            except OSError:
                failed += 1
        return failed

    def close(self) -> None:
        self.sock.close()


@dataclass(slots=True)
class AgentMetrics:
    registry: CollectorRegistry
    polls: Counter
    poll_seconds: Histogram
    domains: Gauge
    samples: Counter
    send_errors: Counter
    gone: Counter
    fallback_calls: Counter

    @classmethod
    def create(cls) -> AgentMetrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            polls=Counter("stacktide_host_agent_polls", "libvirt polls by outcome", ["outcome"], registry=r),
            poll_seconds=Histogram("stacktide_host_agent_poll_seconds", "duration of one poll", registry=r,
                                   buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30)),
            domains=Gauge("stacktide_host_agent_domains", "domains in the last poll", registry=r),
            samples=Counter("stacktide_host_agent_samples", "samples sent", registry=r),
            send_errors=Counter("stacktide_host_agent_send_errors", "datagrams or records not sent",
                                registry=r),
            gone=Counter("stacktide_host_agent_domains_gone", "domains that vanished mid-poll",
                         registry=r),
            fallback_calls=Counter("stacktide_host_agent_fallback_calls",
                                   "per-domain libvirt calls for groups the bulk stats lacked", registry=r),
        )


class HostAgent:
    def __init__(self, source: LibvirtSource, host: str, send: Send, *, interval_s: float,
                 max_datagram_bytes: int = 1400, reconnect_initial_s: float = 1.0,
                 reconnect_max_s: float = 30.0, metrics: AgentMetrics | None = None) -> None:
        self.source, self.host, self.send = source, host, send
        self.interval_s, self.max_datagram_bytes = interval_s, max_datagram_bytes
        self.backoff = (reconnect_initial_s, reconnect_max_s)
        self.metrics = metrics or AgentMetrics.create()
        self.stop = threading.Event()
        self._failures = 0
        self.polls = self.samples_sent = 0

    def poll_once(self) -> int:
        """One poll, sent; returns the number of samples (0 when libvirt was unavailable)."""
        m = self.metrics
        self.polls += 1
        started = time.perf_counter()
        try:
            result = self.source.poll()
        except LibvirtUnavailable as exc:
            m.polls.labels("error").inc()
            self._failures += 1
            log.warning("event=libvirt_unavailable uri=%s failures=%d error=%s", self.source.uri,
                        self._failures, exc)
            return 0
        self._failures = 0
        batch = lines(self.host, result.readings)
        failed = self.send(list(pack(batch, self.max_datagram_bytes)))
        m.poll_seconds.observe(time.perf_counter() - started)
        m.polls.labels("ok").inc()
        m.domains.set(result.domains)
        m.samples.inc(len(batch))
        self.samples_sent += len(batch)
        m.gone.inc(result.gone)
        m.fallback_calls.inc(result.fallback_calls)
        if failed:
            m.send_errors.inc(failed)
        return len(batch)

    def wait_s(self) -> float:
        """The interval, or the reconnect backoff after failed polls (whichever is longer)."""
        if not self._failures:
            return self.interval_s
        initial, most = self.backoff
        return max(self.interval_s, min(most, initial * 2.0 ** (self._failures - 1)))

    def run(self, polls: int | None = None) -> None:
        """Poll until :attr:`stop` is set (or *polls* polls were made), on a fixed cadence."""
        done = 0
        next_at = time.monotonic()
        while not self.stop.is_set() and (polls is None or done < polls):
            self.poll_once()
            done += 1
            next_at = max(next_at + self.wait_s(), time.monotonic())
            self.stop.wait(max(0.0, next_at - time.monotonic()))
        self.source.close()
