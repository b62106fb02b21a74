"""The samples job: ``<prefix>.samples`` topic -> ``host_samples`` table, with counter rates.

The receiver aggregates per window and sends counters raw; the rate is derived here, between
consecutive windows of a series, because only the job sees a series' whole history (a
receiver restart or a second receiver would cut it). The SQL is in ``sql/host_samples.sql``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.sqlfile import Ident, Literal, Raw, render
from stacktide.config import Config
from stacktide.schema import HOST_SAMPLES, SAMPLE_COLUMNS, flink_type

if TYPE_CHECKING:
    from pyflink.table import StatementSet, TableEnvironment

SOURCE = "kafka_samples"
GROUP_ID = "stacktide-jobs-samples"


def declare_source(env: TableEnvironment, config: Config, *, bounded: bool,
                   group_id: str = GROUP_ID) -> str:
    columns = ",\n  ".join(f"`{c.name}` {flink_type(c)}" for c in SAMPLE_COLUMNS)
    env.execute_sql(render(
        "kafka_samples",
        table=Ident(SOURCE),
        columns=Raw(columns),
        out_of_order_s=Literal(str(int(config.jobs.out_of_order_s))),
        topic=Literal(config.kafka.topic("samples")),
        bootstrap_servers=Literal(config.kafka.bootstrap_servers),
        group_id=Literal(group_id),
        bounded_mode=Literal("latest-offset" if bounded else "unbounded"),
    ))
    return SOURCE


def build(env: TableEnvironment, statements: StatementSet, config: Config, *, bounded: bool) -> None:
    """Add the samples INSERT to *statements*."""
    source = declare_source(env, config, bounded=bounded)
    target = f"{config.iceberg.catalog_name}.{config.iceberg.namespace}.{HOST_SAMPLES.name}"
    statements.add_insert_sql(render("host_samples", target=Ident(target), source=Ident(source)))
