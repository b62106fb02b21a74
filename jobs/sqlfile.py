"""Load ``sql/*.sql`` and fill its ``${name}`` parameters safely.

The statements live in files an operator can read and run in the SQL client;
values go in through :class:`Literal` (quoted string) or :class:`Ident`
(back-quoted, possibly dotted identifier) or :class:`Raw` (a fragment built from
the schema module), never by formatting user-supplied text into SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stacktide.config import REPO_ROOT
from stacktide.errors import StacktideError

SQL_DIR = REPO_ROOT / "sql"
_PARAM = re.compile(r"\$\{([a-z_]+)\}")


@dataclass(frozen=True, slots=True)
class Literal:
    value: str

    def render(self) -> str:
        return "'" + self.value.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Ident:
    """``cat.db.table`` -> ```cat`.`db`.`table```."""

    value: str

    def render(self) -> str:
        return ".".join("`" + part.replace("`", "``") + "`" for part in self.value.split("."))


@dataclass(frozen=True, slots=True)
class Raw:
    value: str

    def render(self) -> str:
        return self.value


Param = Literal | Ident | Raw


def render(name: str, sql_dir: Path = SQL_DIR, **params: Param) -> str:
    """The statement of ``sql/<name>.sql`` with every ``${param}`` filled; comments dropped."""
    text = (sql_dir / f"{name}.sql").read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    missing = sorted(set(_PARAM.findall(body)) - set(params))
    if missing:
        raise StacktideError(f"sql/{name}.sql needs parameters {missing}")
    return _PARAM.sub(lambda m: params[m.group(1)].render(), body).strip().rstrip(";")
