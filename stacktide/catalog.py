"""The Iceberg catalog, as pyiceberg and as Flink see it: one configuration, two clients.

Flink's JdbcCatalog and pyiceberg's SqlCatalog share the same two catalog tables,
so the jobs write and every Python reader reads the same catalog, provided both
use the same catalog name. Tables are created here, from :mod:`stacktide.schema`,
because only the Iceberg API expresses hidden partitioning (``day(generated)``);
Flink's DDL knows identity partitions only.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from stacktide.config import IcebergConfig
from stacktide.errors import ConfigError
from stacktide.schema import Column, TableDef

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table


def sqlalchemy_uri(jdbc_uri: str) -> str:
    """``jdbc:sqlite:/a/b.db`` -> ``sqlite:////a/b.db``; ``jdbc:postgresql://h/db`` -> psycopg2 form."""
    rest = jdbc_uri.removeprefix("jdbc:")
    if rest.startswith("sqlite:"):
        path = rest.removeprefix("sqlite:").split("?", 1)[0]
        return f"sqlite:///{path}"
    if rest.startswith("postgresql:"):
        return "postgresql+psycopg2:" + rest.removeprefix("postgresql:")
    raise ConfigError("iceberg", "iceberg.uri", "a jdbc:sqlite: or jdbc:postgresql: URI", jdbc_uri)


def sqlite_path(cfg: IcebergConfig) -> Path | None:
    rest = cfg.uri.removeprefix("jdbc:")
    if not rest.startswith("sqlite:"):
        return None
    return Path(rest.removeprefix("sqlite:").split("?", 1)[0])


def prepare_storage(cfg: IcebergConfig) -> None:
    """Create the local catalog file and warehouse; put SQLite in WAL mode.

    WAL lets readers (pyiceberg, a second job) read while a Flink commit writes;
    the default rollback journal answers them SQLITE_BUSY. The mode is stored in
    the database file, so setting it once serves every later client.
    """
    db = sqlite_path(cfg)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    url = urlparse(cfg.warehouse)
    if url.scheme == "file":
        Path(url.path).mkdir(parents=True, exist_ok=True)


def load_catalog(cfg: IcebergConfig) -> Catalog:
    """The pyiceberg view of the catalog."""
    from pyiceberg.catalog.sql import SqlCatalog

    prepare_storage(cfg)
    return SqlCatalog(cfg.catalog_name, uri=sqlalchemy_uri(cfg.uri), warehouse=cfg.warehouse)


def _iceberg_type(column: Column) -> Any:
    from pyiceberg import types

    return {
        "string": types.StringType(),
        "timestamptz": types.TimestamptzType(),
        "long": types.LongType(),
        "int": types.IntegerType(),
        "double": types.DoubleType(),
        "boolean": types.BooleanType(),
    }[column.type]


def iceberg_schema(table: TableDef) -> Any:
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    ids = {c.name: i for i, c in enumerate(table.columns, start=1)}
    return Schema(
        *(
            NestedField(ids[c.name], c.name, _iceberg_type(c), required=c.required, doc=c.doc)
            for c in table.columns
        ),
        identifier_field_ids=[ids[n] for n in table.identifier],
    )


def partition_spec(table: TableDef, schema: Any) -> Any:
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform, HourTransform, IdentityTransform, MonthTransform

    transforms = {"identity": IdentityTransform, "day": DayTransform,
                  "hour": HourTransform, "month": MonthTransform}
    parts = []
    for i, p in enumerate(table.partitions):
        source = schema.find_field(p.column).field_id
        name = p.column if p.transform == "identity" else f"{p.column}_{p.transform}"
        parts.append(PartitionField(source, 1000 + i, transforms[p.transform](), name))
    return PartitionSpec(*parts)


def ensure_table(catalog: Catalog, cfg: IcebergConfig, table: TableDef) -> Table:
    """Create the namespace and table when absent; an existing table is left as it is."""
    ident = f"{cfg.namespace}.{table.name}"
    catalog.create_namespace_if_not_exists(cfg.namespace)
    if catalog.table_exists(ident):
        return catalog.load_table(ident)
    schema = iceberg_schema(table)
    return catalog.create_table(
        ident,
        schema,
        partition_spec=partition_spec(table, schema),
        properties={"format-version": "2", "comment": table.doc},
    )


def add_missing_columns(table: Table, definition: TableDef) -> Table:
    """Add the columns of *definition* an existing *table* lacks (optional, at the end).

    Columns may be added, never renamed or removed (CONTRACT.md): a table created before
    a column existed gets it here, as Iceberg schema evolution, and old rows read it as null.
    """
    have = {f.name for f in table.schema().fields}
    missing = [c for c in definition.columns if c.name not in have]
    if not missing:
        return table
    with table.update_schema() as update:
        for column in missing:
            update.add_column(column.name, _iceberg_type(column), doc=column.doc)
    return table


def java_catalog_properties(cfg: IcebergConfig) -> dict[str, str]:
    """The properties of Iceberg's Java catalog (``CatalogUtil.buildIcebergCatalog``): the
    JdbcCatalog named by class, as Flink's catalog and the table upkeep load it."""
    return {
        "catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        "uri": cfg.uri,
        "warehouse": cfg.warehouse,
    }


def flink_catalog_options(cfg: IcebergConfig) -> dict[str, str]:
    """Options of Flink's ``CREATE CATALOG``: JdbcCatalog through ``catalog-impl``.

    Iceberg's Flink factory accepts only hive/hadoop/rest as ``catalog-type``;
    the JDBC catalog must be named by class.
    """
    return {"type": "iceberg", **java_catalog_properties(cfg)}
