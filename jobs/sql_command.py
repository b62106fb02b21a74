"""``stacktide sql``: Flink SQL over the tables and the topics, for ad-hoc questions.

The session starts in the Iceberg catalog's namespace (``SELECT * FROM instances`` works as
written) and has the live topics as temporary tables, ``kafka_notifications`` and
``kafka_samples`` (sql/kafka_*.sql), so history and the topics can be joined. Batch mode by
default: a query over a topic reads it up to its end at the start, and ends. ``--streaming``
keeps reading (Ctrl-C stops it). The ready queries of ``sql/`` run by name (``--query``),
rendered for this configuration.

Statements come from ``-e``, ``-f FILE`` or standard input, separated by ``;``. Each query's
rows are printed by Flink as a table (every type prints, timestamps included).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stacktide.config import Config
from stacktide.errors import StacktideError

GROUP_ID = "stacktide-sql"  # never committed: batch runs take no checkpoints


def ready_queries() -> dict[str, Callable[[Config], str]]:
    """Name -> the ready query of ``sql/`` rendered for a configuration."""
    from jobs import queries

    def current(table: str) -> Callable[[Config], str]:
        return lambda config: queries.current_rows(config, table)

    return {"usage_by_tenant": queries.usage_by_tenant, "instance_cpu": queries.instance_cpu,
            **{f"current_{t}": current(t) for t in ("instances", "instance_usage", "usage_audit")}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-e", "--execute", metavar="SQL", help="statements to run")
    source.add_argument("-f", "--file", type=Path, help="a file of statements to run")
    source.add_argument("--query", choices=sorted(ready_queries()), help="a ready query of sql/")
    parser.add_argument("--streaming", action="store_true",
                        help="streaming mode: topics are read without end")


def statements(text: str) -> Iterator[str]:
    """The ``;``-separated statements of *text*; a ``;`` inside quotes, backticks or a ``--``
    comment separates nothing."""
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is None and text.startswith("--", i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            current.append(text[i:end])
            i = end
            continue
        if quote is None and ch in "'`\"":
            quote = ch
        elif quote == ch:
            quote = None
        if ch == ";" and quote is None:
            yield from _kept("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    yield from _kept("".join(current))


def _kept(statement: str) -> Iterator[str]:
    code = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
    if code.strip():
        yield statement.strip()


def session(config: Config, *, streaming: bool) -> Any:
    """A table environment in the catalog's namespace, with the topics declared."""
    from jobs import host_samples, notifications
    from jobs.environment import JobJars, create_table_env
    from jobs.sqlfile import Ident
    from stacktide.local.jars import ensure_jars, pipeline_jars

    jars = ensure_jars(config)
    env = create_table_env(config, JobJars(pipeline_jars(config, jars), tuple(jars["hadoop"])),
                           job_name="stacktide-sql", batch=not streaming)
    env.execute_sql(f"USE CATALOG {Ident(config.iceberg.catalog_name).render()}")
    env.execute_sql(f"USE {Ident(config.iceberg.namespace).render()}")
    notifications.declare_source(env, config, bounded=not streaming, group_id=GROUP_ID)
    host_samples.declare_source(env, config, bounded=not streaming, group_id=GROUP_ID)
    return env


def run(args: argparse.Namespace, config: Config) -> int:
    if args.query:
        text = ready_queries()[args.query](config)
    elif args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise StacktideError(f"sql: cannot read {args.file}: {exc.strerror}") from exc
    elif args.execute is not None:
        text = args.execute
    else:
        text = sys.stdin.read()
    todo = list(statements(text))
    if not todo:
        print("stacktide sql: no statement given", file=sys.stderr)
        return 2
    env = session(config, streaming=args.streaming)
    for statement in todo:
        env.execute_sql(statement).print()
        sys.stdout.flush()
    return 0
