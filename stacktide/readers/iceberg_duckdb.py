"""The tables as DuckDB reads them: its own Iceberg reader, loaded from pip packages, offline.

DuckDB's ``iceberg`` extension (with ``avro``, which it reads manifests with) is an
implementation of Iceberg of its own, independent of pyiceberg and of the Java library the
jobs write with; reading every table with it is how the project checks that what it writes is
plain Iceberg. DuckDB would download extensions from its own repository at ``INSTALL`` or on
first use; here they come from the ``duckdb-extension-avro`` and ``duckdb-extension-iceberg``
packages (pinned with DuckDB itself: an extension loads only into the DuckDB version it was
built for) and autoinstall is off, so a missing file is an error, never a download.

DuckDB has no client for a JDBC catalog: the current metadata file of a table is read from
the catalog's ``iceberg_tables`` row (the same row Java's JdbcCatalog and pyiceberg's
SqlCatalog read), and ``iceberg_scan`` reads the table from that file.

An ``s3://`` warehouse is read through the ``httpfs`` extension (``duckdb-extension-httpfs``,
pinned the same way) with a DuckDB secret made from ``iceberg.s3``. DuckDB's way to the AWS
SDK's default credentials is yet another extension (``aws``) that stacktide does not install:
DuckDB reads an object store with the keys of the configuration only.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stacktide.config import IcebergConfig
from stacktide.errors import StacktideError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

# Loaded in this order: iceberg's initialization looks for avro and would fetch it if absent.
EXTENSIONS = ("avro", "iceberg")
OBJECT_STORE_EXTENSION = "httpfs"


def extension_file(name: str) -> Path:
    """The ``.duckdb_extension`` file that the ``duckdb-extension-<name>`` package ships for the
    DuckDB version installed."""
    import duckdb

    package = f"duckdb_extension_{name}"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise StacktideError(f"DuckDB extension {name!r}: the Python package "
                             f"duckdb-extension-{name} is not installed") from exc
    folder = Path(str(module.__file__)).parent / "extensions" / f"v{duckdb.__version__}"
    path = folder / f"{name}.duckdb_extension"
    if not path.is_file():
        found = sorted(p.parent.name for p in folder.parent.glob(f"*/{name}.duckdb_extension"))
        raise StacktideError(f"DuckDB extension {name!r}: {path} does not exist; duckdb "
                             f"{duckdb.__version__} is installed, the package has builds for "
                             f"{', '.join(found) or 'no version'}")
    return path


def connect(cfg: IcebergConfig | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the avro and iceberg extensions loaded from their packages;
    with *cfg* naming an ``s3://`` warehouse, httpfs too, and a secret to reach it."""
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    names: tuple[str, ...] = EXTENSIONS
    if cfg is not None and cfg.s3 is not None:
        names = (OBJECT_STORE_EXTENSION, *EXTENSIONS)
    for name in names:
        con.execute(f"LOAD '{extension_file(name)}'")
    if cfg is not None and cfg.s3 is not None:
        con.execute(s3_secret_statement(cfg))
    return con


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def s3_secret_statement(cfg: IcebergConfig) -> str:
    """``CREATE SECRET`` for the warehouse's bucket, from ``iceberg.s3``; DuckDB names the
    endpoint without its scheme, which says whether to use TLS. The statement holds the
    secret key: never log it."""
    s3 = cfg.s3
    if s3 is None:
        raise StacktideError(f"iceberg.warehouse={cfg.warehouse} is not an s3:// warehouse")
    if not s3.access_key_id:
        raise StacktideError("DuckDB reads an s3:// warehouse with iceberg.s3.access_key_id and "
                             "secret_access_key only (the AWS SDK's default credentials need "
                             "DuckDB's aws extension, which stacktide does not install)")
    options = {"TYPE": "s3", "KEY_ID": _quoted(s3.access_key_id),
               "SECRET": _quoted(s3.secret_access_key), "REGION": _quoted(s3.region),
               "URL_STYLE": _quoted("path" if s3.path_style_access else "vhost"),
               "SCOPE": _quoted(cfg.warehouse)}
    if s3.endpoint:
        endpoint = urlsplit(s3.endpoint)
        options["ENDPOINT"] = _quoted(endpoint.netloc)
        options["USE_SSL"] = "true" if endpoint.scheme == "https" else "false"
    listed = ", ".join(f"{key} {value}" for key, value in options.items())
    return f"CREATE OR REPLACE SECRET stacktide_warehouse ({listed})"


def metadata_location(cfg: IcebergConfig, table: str) -> str:
    """The current metadata file of ``<namespace>.<table>``, from the JDBC catalog's row."""
    import sqlalchemy

    from stacktide.catalog import sqlalchemy_uri

    engine = sqlalchemy.create_engine(sqlalchemy_uri(cfg))
    try:
        with engine.connect() as conn:
            row = conn.execute(sqlalchemy.text(
                "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = :catalog "
                "AND table_namespace = :namespace AND table_name = :table"),
                {"catalog": cfg.catalog_name, "namespace": cfg.namespace, "table": table},
            ).one_or_none()
    finally:
        engine.dispose()
    if row is None:
        raise StacktideError(f"no table {cfg.namespace}.{table} in catalog {cfg.catalog_name!r} "
                             f"({cfg.uri}): run `stacktide jobs run` first")
    return str(row[0])


def read_arrow(con: duckdb.DuckDBPyConnection, cfg: IcebergConfig, table: str) -> pa.Table:
    """Every row of the table's current snapshot, as DuckDB reads it."""
    location = metadata_location(cfg, table)
    return con.execute("SELECT * FROM iceberg_scan(?)", [location]).to_arrow_table()
