"""SQL files get their parameters quoted, never pasted."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.sqlfile import Ident, Literal, Raw, render
from stacktide.errors import StacktideError


def test_literals_and_identifiers_are_quoted(tmp_path: Path) -> None:
    (tmp_path / "q.sql").write_text("-- a comment\nSELECT ${cols} FROM ${t} WHERE a = ${v};\n")
    sql = render("q", tmp_path, cols=Raw("a, b"), t=Ident("cat.db.ta`ble"), v=Literal("it's"))
    assert sql == "SELECT a, b FROM `cat`.`db`.`ta``ble` WHERE a = 'it''s'"


def test_missing_parameter_is_named(tmp_path: Path) -> None:
    (tmp_path / "q.sql").write_text("SELECT ${x}, ${y}")
    with pytest.raises(StacktideError, match=r"\['y'\]"):
        render("q", tmp_path, x=Raw("1"))


def test_shipped_statements_render() -> None:
    archive = render("notifications_archive", target=Ident("c.s.notifications"),
                     source=Ident("k"), columns=Raw("`message_id`"))
    assert archive.startswith("INSERT INTO `c`.`s`.`notifications`")
    assert "${" not in archive
