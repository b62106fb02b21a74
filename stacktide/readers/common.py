"""What every reader shares: the current rows of a table, the time window, the output.

The request job appends a row each time a request's or an error's row changes, with a
higher ``revision``; :func:`read` keeps the highest per key (the rule of
:func:`stacktide.usage_report.current`). Lists the job stores as JSON text come back
decoded. ``--since``/``--until`` bound the rows' time column; ``--cell`` keeps one cell.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacktide.config import Config
from stacktide.errors import StacktideError
from stacktide.schema import TABLES
from stacktide.usage_report import current

if TYPE_CHECKING:
    import pyarrow as pa

TIME_COLUMN = {"requests": "first_at", "errors": "at", "notifications": "generated"}
JSON_COLUMNS = ("cells", "services", "hosts", "instance_ids", "operations", "preceding")


def add_window(parser: argparse.ArgumentParser, plot: bool = False) -> None:
    parser.add_argument("--since", default=None, help="UTC ISO-8601 time, inclusive")
    parser.add_argument("--until", default=None, help="UTC ISO-8601 time, exclusive")
    parser.add_argument("--cell", default=None, help="only this cell")
    parser.add_argument("--output", choices=["text", "json"], default="text")
    if plot:
        parser.add_argument("--plot", default=None, metavar="FILE.png",
                            help="draw the distribution per hour into this PNG file")


def parse_time(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise StacktideError(f"{flag}: {text!r} is not an ISO-8601 date or time") from exc
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    return parse_time(args.since, "--since"), parse_time(args.until, "--until")


def row_filter(name: str, since: datetime | None, until: datetime | None,
               extra: Iterable[Any] = ()) -> Any:
    """A pyiceberg filter on *name*'s time column (pushed down to the files' bounds), None for all."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    terms = list(extra)
    column = TIME_COLUMN[name]
    if since is not None:
        terms.append(GreaterThanOrEqual(column, since.isoformat()))
    if until is not None:
        terms.append(LessThan(column, until.isoformat()))
    if not terms:
        return None  # the whole table
    return terms[0] if len(terms) == 1 else And(*terms)


def read_arrow(config: Config, name: str, where: Any = None, cell: str | None = None) -> pa.Table:
    """Current rows of ``requests``, ``errors``, ``instances``; the rows of ``notifications``
    (a row per message, never revised). *cell*: only the rows of that cell."""
    import pyarrow.compute as pc

    from stacktide.catalog import load_catalog

    catalog = load_catalog(config.iceberg)
    ident = f"{config.iceberg.namespace}.{name}"
    if not catalog.table_exists(ident):
        raise StacktideError(f"no table {ident}: run `stacktide jobs run` first")
    table = catalog.load_table(ident)
    scan = table.scan() if where is None else table.scan(row_filter=where)
    rows = scan.to_arrow()
    if "revision" in rows.column_names:  # a revised table: the highest revision per key
        rows = current(rows, TABLES[name].identifier)
    if cell is not None and "cells" in rows.column_names:
        rows = rows.filter(pc.match_substring(rows["cells"], json.dumps(cell)))
    elif cell is not None and "cell" in rows.column_names:
        rows = rows.filter(pc.equal(rows["cell"], cell))
    return rows


def read(config: Config, name: str, where: Any = None,
         cell: str | None = None) -> list[dict[str, Any]]:
    """:func:`read_arrow` as dicts, the JSON text columns decoded."""
    out: list[dict[str, Any]] = read_arrow(config, name, where, cell).to_pylist()
    for row in out:
        for column in JSON_COLUMNS:
            if isinstance(row.get(column), str):
                row[column] = json.loads(row[column])
    return out


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def print_json(obj: Any) -> None:
    print(json.dumps(jsonable(obj), indent=1))


def when(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile *q* (0..1) of *values* (not empty): as SQL's
    ``quantile_cont`` and numpy's default compute it."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def run_sql(name: str, tables: Mapping[str, pa.Table], **params: Any) -> list[dict[str, Any]]:
    """Run ``sql/<name>.sql`` (DuckDB SQL) over *tables*, registered under their names;
    ``$param`` placeholders are bound from *params*, never formatted into the text."""
    import duckdb

    from jobs.sqlfile import SQL_DIR

    text = Path(SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")
    with duckdb.connect() as con:
        for table_name, table in tables.items():
            con.register(table_name, table)
        result = con.execute(text, params or None)
        columns = [d[0] for d in result.description]
        return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
