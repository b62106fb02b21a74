"""Ready Flink SQL over the tables, rendered for a configuration (catalog, namespace).

The statements are files in ``sql/``; the keys that identify a revised table's rows are the
tables' identifier fields (:data:`stacktide.schema.TABLES`), as for the pyiceberg readers.
"""

from __future__ import annotations

from jobs.sqlfile import Ident, Raw, render
from stacktide.config import Config
from stacktide.schema import TABLES


def table_ident(config: Config, name: str) -> Ident:
    return Ident(f"{config.iceberg.catalog_name}.{config.iceberg.namespace}.{name}")


def current_rows(config: Config, name: str) -> str:
    """``SELECT`` of the current rows of *name* (``instances``, ``instance_usage``,
    ``usage_audit``)."""
    columns = ", ".join(f"`{c}`" for c in TABLES[name].column_names())
    return render("current_rows", columns=Raw(columns), table=table_ident(config, name),
                  key=Raw(", ".join(f"`{k}`" for k in TABLES[name].identifier)))


def usage_by_tenant(config: Config) -> str:
    return render("usage_by_tenant", current_usage=Raw(current_rows(config, "instance_usage")))


def instance_cpu(config: Config) -> str:
    """CPU seconds used (host_samples' ``cpu`` counter) against vCPU seconds allocated (current
    instance_usage rows) per instance and usage period, and their ratio: what an instance was
    given by nova set beside what the hypervisor measured it using."""
    return render("instance_cpu", samples=table_ident(config, "host_samples"),
                  current_usage=Raw(current_rows(config, "instance_usage")),
                  period_s=Raw(str(config.usage.period_us // 1_000_000)))
