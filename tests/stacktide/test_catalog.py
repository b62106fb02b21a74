"""The tables' Iceberg identifier fields: the key where it names one row, none on revised tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyiceberg.schema import Schema

from stacktide.catalog import align_identifier_fields, ensure_table, iceberg_schema, load_catalog
from stacktide.config import Config, config_from_mapping
from stacktide.schema import TABLES


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return config_from_mapping({"local": {"state_dir": str(tmp_path / "state")}}, "<test>",
                               base=tmp_path)


def test_only_tables_without_revisions_declare_their_key(config: Config) -> None:
    """Flink's Iceberg sink would delete, by position, the earlier of two revisions of a key
    written in one checkpoint if the key were the table's identifier fields."""
    catalog = load_catalog(config.iceberg)
    declared = {name: ensure_table(catalog, config.iceberg, t).schema().identifier_field_names()
                for name, t in TABLES.items()}
    assert declared == {
        "notifications": {"message_id"}, "instance_events": {"message_id"},
        "host_samples": {"host", "resource_id", "meter", "window_start"},
        "instances": set(), "instance_usage": set(), "usage_audit": set(), "requests": set(),
        "errors": set()}


def test_a_revised_table_created_with_its_key_loses_it(config: Config) -> None:
    catalog = load_catalog(config.iceberg)
    catalog.create_namespace(config.iceberg.namespace)
    definition = TABLES["instance_usage"]
    fresh = iceberg_schema(definition)
    ids = [fresh.find_field(name).field_id for name in definition.identifier]
    old = catalog.create_table(f"{config.iceberg.namespace}.instance_usage",
                               Schema(*fresh.fields, identifier_field_ids=ids))
    assert old.schema().identifier_field_names() == set(definition.identifier)

    aligned = align_identifier_fields(old, definition)
    assert aligned.schema().identifier_field_names() == set()
    assert [f.name for f in aligned.schema().fields] == definition.column_names()
    schemas = len(aligned.metadata.schemas)
    assert len(align_identifier_fields(aligned, definition).metadata.schemas) == schemas  # no-op
