"""The ``stacktide`` command: one entry point, one module per subcommand.

Each subcommand module exposes ``add_arguments(parser)`` and
``run(args, config) -> int`` and keeps heavy imports (PyFlink, pyiceberg) inside
``run``, so ``stacktide --help`` stays fast. Every flag has a ``STACKTIDE_*``
environment twin: ``--kafka-port`` reads ``STACKTIDE_KAFKA_PORT`` when not given.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from stacktide.config import load_config
from stacktide.errors import StacktideError
from stacktide.transport import redact

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "local": ("stacktide.local.command", "the embedded default stack: up, down, status, jars"),
    "bridge": ("connectors.bridge_command", "forward RabbitMQ notifications of every cell to Kafka"),
    "host-agent": ("host_agent.command", "poll this hypervisor's libvirt in bulk and send samples"),
    "capture": ("connectors.capture", "record live notification traffic of cells to a .jsonl file"),
    "replay": ("connectors.replay", "publish a capture or the sample corpus onto RabbitMQ"),
    "simulate": ("stacktide.simulate.command", "seeded nova traffic of a cloud, with its ground truth"),
    "jobs": ("jobs.command", "run the PyFlink jobs"),
    "sql": ("jobs.sql_command", "Flink SQL over the Iceberg tables and the Kafka topics"),
    "tables": ("jobs.upkeep", "table upkeep: compact small files, expire snapshots, delete orphans"),
    "demo": ("stacktide.demo", "stack up, sample traffic, jobs, and what landed in Iceberg"),
    "usage": ("stacktide.usage_report", "exact usage of a tenant or an instance per period, from Iceberg"),
    "uuid": ("stacktide.readers.instance", "every notification about one instance, in time order"),
    "request": ("stacktide.readers.request", "one request's timeline: operations, events, errors"),
    "timings": ("stacktide.readers.timings", "N, min, max, avg, p97 of each operation's duration"),
    "errors": ("stacktide.readers.errors", "recent errors, grouped by masked message"),
    "kpi": ("stacktide.readers.kpi", "success ratio, duration percentiles, errors, slow requests"),
}


class EnvDefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    pass


def env_default(parser: argparse.ArgumentParser) -> None:
    """Give every optional flag its ``STACKTIDE_<FLAG>`` environment twin as default."""
    for action in parser._actions:  # argparse has no public iterator over actions
        if not action.option_strings or action.dest in {"help", "config"}:
            continue
        name = "STACKTIDE_" + action.dest.upper()
        if name in os.environ:
            raw = os.environ[name]
            if action.type is not None and callable(action.type):
                action.default = action.type(raw)
            elif isinstance(action.default, bool) or action.nargs == 0:
                action.default = raw.lower() in {"1", "true", "yes", "on"}
            else:
                action.default = raw
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                env_default(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stacktide", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML configuration (env STACKTIDE_CONFIG)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(sub)
    for sub in subs.choices.values():
        env_default(sub)
    env_default(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # Libraries that narrate every connection step at INFO: their warnings still show.
    for noisy in ("pika", "apache_beam", "py4j"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        config = load_config(args.config)
        module = importlib.import_module(COMMANDS[args.command][0])
        return int(module.run(args, config))
    except StacktideError as exc:
        print(f"stacktide: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
