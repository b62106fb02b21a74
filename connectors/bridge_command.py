"""``stacktide bridge``: run the bridge for every configured cell until SIGTERM.

On SIGTERM or SIGINT the bridge stops consuming, waits for Kafka to confirm what
it sent (``bridge.shutdown_timeout_s`` at most), acks that, and closes: nothing is
lost and, normally, nothing repeats. What was not confirmed stays unacked in
RabbitMQ and is delivered again to the next bridge. With ``bridge.metrics_port``
set, ``/metrics`` and ``/healthz`` are served for as long as the bridge runs.
"""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

from stacktide.config import Config
from stacktide.transport import TransportURLError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--idle-exit", type=float, default=None, metavar="SECONDS",
        help="stop once no message arrived for this long (replays, tests)",
    )
    parser.add_argument(
        "--declare-only", action="store_true",
        help="declare the bridge's queues and bindings on every cell, then exit",
    )


def run(args: argparse.Namespace, config: Config) -> int:
    from connectors.bridge import Bridge

    if not config.cells:
        log.error("no cells configured in %s", config.source)
        return 2
    try:
        bridge = Bridge(config)  # reads the cells' TLS files: a bad one stops start-up here
    except TransportURLError as exc:
        log.error("event=bad_transport config=%s error=%s", config.source, exc)
        return 2
    if args.declare_only:
        bridge.declare()
        return 0

    # pika logs each failed connection attempt with a traceback at ERROR; the bridge's own
    # event=disconnected line already names the cell, the reason and the next retry.
    logging.getLogger("pika").setLevel(logging.CRITICAL)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        bridge.stop.set()

    if config.bridge.metrics_port:
        try:
            bridge.serve()
        except OSError as exc:  # the port is taken: say so rather than run unobservable
            log.error("event=metrics_unavailable host=%s port=%d error=%s", config.bridge.metrics_host,
                      config.bridge.metrics_port, exc)
            return 2
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bridge.run(idle_exit=args.idle_exit)
    for cell in bridge.cells:
        s = cell.stats
        print(f"cell={cell.cell.name} received={s.received} forwarded={s.forwarded} "
              f"dead_lettered={s.dead_lettered}")
    return 0
