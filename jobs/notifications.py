"""The raw archive job: ``stacktide.notifications`` topic -> ``notifications`` table.

Every other job reads the same topic; this one keeps the notifications themselves,
all priorities and services, once each, so that anything can be recomputed later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.sqlfile import Ident, Literal, Raw, render
from stacktide.config import Config
from stacktide.schema import ENVELOPE_COLUMNS, NOTIFICATIONS, flink_type

if TYPE_CHECKING:
    from pyflink.table import StatementSet, TableEnvironment

SOURCE = "kafka_notifications"
GROUP_ID = "stacktide-jobs-notifications"


def declare_source(env: TableEnvironment, config: Config, *, bounded: bool, group_id: str) -> str:
    """Declare the Kafka topic as a temporary table; returns its name."""
    columns = ",\n  ".join(f"`{c.name}` {flink_type(c)}" for c in ENVELOPE_COLUMNS)
    env.execute_sql(
        render(
            "kafka_notifications",
            table=Ident(SOURCE),
            columns=Raw(columns),
            topic=Literal(config.kafka.topic("notifications")),
            bootstrap_servers=Literal(config.kafka.bootstrap_servers),
            group_id=Literal(group_id),
            bounded_mode=Literal("latest-offset" if bounded else "unbounded"),
        )
    )
    return SOURCE


def build(env: TableEnvironment, statements: StatementSet, config: Config, *, bounded: bool) -> None:
    """Add the archive INSERT to *statements*."""
    source = declare_source(env, config, bounded=bounded, group_id=GROUP_ID)
    target = f"{config.iceberg.catalog_name}.{config.iceberg.namespace}.{NOTIFICATIONS.name}"
    statements.add_insert_sql(
        render(
            "notifications_archive",
            target=Ident(target),
            source=Ident(source),
            columns=Raw(", ".join(f"`{n}`" for n in NOTIFICATIONS.column_names())),
        )
    )
