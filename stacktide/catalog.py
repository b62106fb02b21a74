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
from urllib.parse import parse_qs, urlparse, urlsplit

from stacktide.config import IcebergConfig
from stacktide.errors import CatalogError, ConfigError
from stacktide.schema import Column, TableDef

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table


def sqlalchemy_uri(cfg: IcebergConfig) -> str:
    """The SQLAlchemy URL of the catalog: ``jdbc:sqlite:/a/b.db`` -> ``sqlite:////a/b.db``;
    ``jdbc:postgresql://h:p/db?sslmode=…`` -> the psycopg2 form, with ``iceberg.user`` and
    ``iceberg.password`` (escaped) in it. The result holds the password: never log it."""
    rest = cfg.uri.removeprefix("jdbc:")
    if rest.startswith("sqlite:"):
        path = rest.removeprefix("sqlite:").split("?", 1)[0]
        return f"sqlite:///{path}"
    if rest.startswith("postgresql:"):
        from sqlalchemy.engine import URL

        parts = urlsplit(rest)
        return URL.create(
            "postgresql+psycopg2",
            username=cfg.user or None,
            password=cfg.password or None,
            host=parts.hostname,
            port=parts.port,
            database=parts.path.removeprefix("/"),
            query={k: tuple(v) for k, v in parse_qs(parts.query).items()},
        ).render_as_string(hide_password=False)
    raise ConfigError("iceberg", "iceberg.uri", "a jdbc:sqlite: or jdbc:postgresql: URI", cfg.uri)


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


def object_store_properties(cfg: IcebergConfig) -> dict[str, str]:
    """The catalog properties that reach an ``s3://`` warehouse, under the names Iceberg's Java
    ``S3FileIO`` and pyiceberg's pyarrow file IO both read (``client.region`` serves both; the
    path-style switch is Java's alone, pyarrow addresses buckets by path on its own). Empty for
    a ``file://`` warehouse. They hold the secret key: never log them."""
    s3 = cfg.s3
    if s3 is None:
        return {}
    properties = {"client.region": s3.region,
                  "s3.path-style-access": "true" if s3.path_style_access else "false"}
    if s3.endpoint:
        properties["s3.endpoint"] = s3.endpoint
    if s3.access_key_id:
        properties["s3.access-key-id"] = s3.access_key_id
        properties["s3.secret-access-key"] = s3.secret_access_key
    return properties


def check_warehouse(cfg: IcebergConfig) -> None:
    """Stop on an ``s3://`` warehouse whose bucket cannot be reached, with the endpoint, the
    bucket and what the store answered, before a table is created or a job started: otherwise
    the first write fails deep inside pyarrow or a Flink task."""
    if cfg.s3 is None:
        return
    from pyarrow.fs import FileType, S3FileSystem

    s3 = cfg.s3
    bucket = urlparse(cfg.warehouse).netloc
    where = f"iceberg.warehouse={cfg.warehouse} at {s3.endpoint or 'AWS S3'} ({s3.region})"
    fs = S3FileSystem(endpoint_override=s3.endpoint or None, region=s3.region,
                      access_key=s3.access_key_id or None,
                      secret_key=s3.secret_access_key or None,
                      connect_timeout=10, request_timeout=30)
    try:
        kind = fs.get_file_info(bucket).type
    except OSError as exc:
        answer = " ".join(str(exc).split())
        if s3.secret_access_key:
            answer = answer.replace(s3.secret_access_key, "***")
        raise CatalogError(f"the Iceberg warehouse {where} cannot be used: {answer}") from None
    if kind != FileType.Directory:
        raise CatalogError(f"the Iceberg warehouse {where} cannot be used: the bucket {bucket!r} "
                           "does not exist; create it first")


def load_catalog(cfg: IcebergConfig) -> Catalog:
    """The pyiceberg view of the catalog.

    pyiceberg connects at once (it creates the catalog's two tables when absent), so an
    unreachable server or a refused login stops here, as a :class:`CatalogError` that says
    which catalog and what its database answered, rather than later inside a job.
    """
    from pyiceberg.catalog.sql import SqlCatalog
    from sqlalchemy.exc import SQLAlchemyError

    prepare_storage(cfg)
    check_warehouse(cfg)
    try:
        return SqlCatalog(cfg.catalog_name, uri=sqlalchemy_uri(cfg), warehouse=cfg.warehouse,
                          **object_store_properties(cfg))
    except SQLAlchemyError as exc:
        # The driver's own message ("connection refused", "password authentication failed for
        # user …"); SQLAlchemy's wrapper would add the statement and a link.
        cause = getattr(exc, "orig", None) or exc
        answer = " ".join(str(cause).split())
        who = f" as user {cfg.user!r}" if cfg.user else ""
        raise CatalogError(f"the Iceberg catalog iceberg.uri={cfg.uri}{who} cannot be used: "
                           f"{answer}") from None


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


def identifier_fields(table: TableDef) -> tuple[str, ...]:
    """The Iceberg identifier fields of *table*: its key where the key names one row, none
    where the jobs append a key's row again with a higher ``revision``.

    Flink's Iceberg sink makes a table's identifier fields its equality fields, and then
    position-deletes the earlier row of a key written twice within one checkpoint. A revised
    table keeps every revision by design; such deletes would drop the revisions that met in a
    checkpoint, and pyiceberg 0.8 does not apply a position delete committed with its data
    file (the spec says it must), so pyiceberg and every other reader would see different rows.
    Without identifier fields the sink only appends; the key stays ``TableDef.identifier``.
    """
    return () if "revision" in table.column_names() else table.identifier


def iceberg_schema(table: TableDef) -> Any:
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    ids = {c.name: i for i, c in enumerate(table.columns, start=1)}
    return Schema(
        *(
            NestedField(ids[c.name], c.name, _iceberg_type(c), required=c.required, doc=c.doc)
            for c in table.columns
        ),
        identifier_field_ids=[ids[n] for n in identifier_fields(table)],
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


def align_identifier_fields(table: Table, definition: TableDef) -> Table:
    """Give an existing *table* the identifier fields :func:`identifier_fields` names: a
    revised table created with its key as identifier fields loses them, so that the jobs'
    next run only appends to it."""
    wanted = identifier_fields(definition)
    if table.schema().identifier_field_names() == set(wanted):
        return table
    with table.update_schema() as update:
        update.set_identifier_fields(*wanted)
    return table


def java_catalog_properties(cfg: IcebergConfig) -> dict[str, str]:
    """The properties of Iceberg's Java catalog (``CatalogUtil.buildIcebergCatalog``): the
    JdbcCatalog named by class, as Flink's catalog and the table upkeep load it; with an
    ``s3://`` warehouse, ``S3FileIO`` of the iceberg-aws-bundle jar as its file IO (Hadoop's
    file systems have no S3 client among the project's jars). They hold the password and the
    secret key: never log them."""
    properties = {
        "catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        "uri": cfg.uri,
        "warehouse": cfg.warehouse,
    }
    if cfg.s3 is not None:
        properties["io-impl"] = "org.apache.iceberg.aws.s3.S3FileIO"
        properties.update(object_store_properties(cfg))
    # JdbcCatalog hands its "jdbc."-prefixed properties to the driver as connection properties.
    if cfg.user:
        properties["jdbc.user"] = cfg.user
    if cfg.password:
        properties["jdbc.password"] = cfg.password
    return properties


def flink_catalog_options(cfg: IcebergConfig) -> dict[str, str]:
    """Options of Flink's ``CREATE CATALOG``: JdbcCatalog through ``catalog-impl``.

    Iceberg's Flink factory accepts only hive/hadoop/rest as ``catalog-type``;
    the JDBC catalog must be named by class. The options hold the password: never log them.
    """
    return {"type": "iceberg", **java_catalog_properties(cfg)}
