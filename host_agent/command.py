"""``stacktide host-agent``: poll this hypervisor's libvirt and send samples until SIGTERM.

Flags override the ``host_agent`` section of the config (``--uri``, ``--interval``,
``--target``); ``--polls N`` stops after N polls (tests, one-shot checks). With
``host_agent.metrics_port`` set, Prometheus ``/metrics`` is served (polls by outcome, poll
duration, domains, samples, send errors, vanished domains, fallback calls).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

from stacktide.config import Config

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", default=None, help="libvirt URI (default: host_agent.uri)")
    parser.add_argument("--interval", type=float, default=None, help="seconds between polls")
    parser.add_argument("--target", choices=["udp", "kafka"], default=None,
                        help="send statsd lines over UDP, or records straight to Kafka")
    parser.add_argument("--polls", type=int, default=None, help="stop after this many polls")


def run(args: argparse.Namespace, config: Config) -> int:
    from prometheus_client import start_http_server

    from host_agent.agent import AgentMetrics, HostAgent, Send, UdpSender
    from host_agent.libvirt_source import LibvirtSource
    from host_agent.meters import load_meters

    c = config.host_agent
    c = dataclasses.replace(c, uri=args.uri or c.uri, interval_s=args.interval or c.interval_s,
                            target=args.target or c.target)
    meters = load_meters(c.meters)
    host = c.host or socket.gethostname()
    send: Send
    close: Callable[[], object]
    if c.target == "udp":
        udp = UdpSender(c.udp_host, c.udp_port)
        send, close = udp, udp.close
    else:
        send, close = kafka_sender(config)
    metrics = AgentMetrics.create()
    if c.metrics_port:
        start_http_server(c.metrics_port, c.metrics_host, registry=metrics.registry)
    agent = HostAgent(LibvirtSource(c.uri, meters), host, send, interval_s=c.interval_s,
                      max_datagram_bytes=c.max_datagram_bytes, reconnect_initial_s=c.reconnect_initial_s,
                      reconnect_max_s=c.reconnect_max_s, metrics=metrics)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        agent.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("event=host_agent_started uri=%s host=%s target=%s interval_s=%s meters=%d",
             c.uri, host, c.target, c.interval_s, len(meters.meters))
    agent.run(polls=args.polls)
    close()
    print(f"host={host} polls={agent.polls} samples={agent.samples_sent}", flush=True)
    return 0


def kafka_sender(config: Config) -> tuple[Callable[[list[bytes]], int], Callable[[], object]]:
    """Direct mode: each poll aggregated here (one window per poll) and produced to Kafka."""
    from connectors.udp import SampleProducer
    from connectors.udp_aggregate import Aggregator

    producer = SampleProducer(config.kafka, "stacktide-host-agent")
    aggregator = Aggregator()

    def send(datagrams: list[bytes]) -> int:
        now = time.time()
        for d in datagrams:
            aggregator.add_datagram(d, now)
        before = producer.failed
        producer(aggregator.drain())
        return producer.failed - before

    return send, producer.close
