"""Configuration: a wrong line names the file, the key and what was expected."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from stacktide.config import (
    DEFAULT_CONFIG,
    PRIORITIES,
    S3_SECRET_ENV,
    S3Config,
    UpkeepConfig,
    format_duration,
    load_config,
    parse_duration,
)
from stacktide.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stacktide.yaml"
    path.write_text(text)
    return path


def test_shipped_config_loads() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert [c.name for c in config.cells] == ["cell1"]
    assert config.cells[0].priorities == PRIORITIES
    assert config.kafka.topic("notifications") == "stacktide.notifications"
    assert config.iceberg.uri.startswith("jdbc:sqlite:")
    assert config.iceberg.uri.endswith("/.stacktide/iceberg/catalog.db")


def test_durable_exchanges_per_cell_default_to_oslos_non_durable(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, (
        "cells:\n"
        "  - {name: a, transport_url: 'rabbit://h1'}\n"
        "  - {name: b, transport_url: 'rabbit://h2', durable_exchanges: true}\n")))
    assert [c.durable_exchanges for c in config.cells] == [False, True]
    assert config.bridge.reconnect_max_s == 5.0


def test_relative_state_dir_resolves_against_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "local: {state_dir: st}\n"))
    assert config.local.state_dir == tmp_path / "st"
    assert config.iceberg.warehouse == (tmp_path / "st" / "iceberg" / "warehouse").as_uri()


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("kafka: {partitions: 0}", "kafka.partitions", "a positive integer"),
        ("kafka: {partitions: many}", "kafka.partitions", "an integer"),
        ("kafka: {bootstrap: x}", "kafka.bootstrap", "one of the known keys"),
        ("usage: {period: week}", "usage.period", "one of hour, day"),
        ("cells: [{name: c1}]", "cells[0].transport_url", "a string (the key is required)"),
        ("cells: [{name: c1, transport_url: 'http://x'}]", "cells[0].transport_url", "rabbit://"),
        ("cells: [{name: c1, transport_url: 'rabbit://h', priorities: [loud]}]",
         "cells[0].priorities", "names among"),
        ("cells: [{name: a, transport_url: 'rabbit://h'}, {name: a, transport_url: 'rabbit://g'}]",
         "cells", "unique cell names"),
        ("iceberg: {uri: 'sqlite:///x.db'}", "iceberg.uri", "a JDBC URI"),
        ("iceberg: {uri: 'jdbc:mysql://h/db'}", "iceberg.uri", "jdbc:postgresql://host:port/database"),
        ("iceberg: {uri: 'jdbc:postgresql:db'}", "iceberg.uri", "jdbc:postgresql://host[:port]/database"),
        ("iceberg: {uri: 'jdbc:postgresql://h:5432/'}", "iceberg.uri", "host[:port]/database"),
        ("iceberg: {uri: 'jdbc:postgresql://h:99999/db'}", "iceberg.uri", "with a port number"),
        ("iceberg: {uri: 'jdbc:postgresql://h/db?ssl=true'}", "iceberg.uri", "only the parameters"),
        ("iceberg: {uri: 'jdbc:postgresql://h/db?sslmode=strict'}", "iceberg.uri", "sslmode one of"),
        ("iceberg: {uri: 'jdbc:postgresql://h/db', password: pw}", "iceberg.user", "the user"),
        ("iceberg: {user: u}", "iceberg.user", "no credentials with a jdbc:sqlite: uri"),
        ("jobs: {parallelism: -1}", "jobs.parallelism", "non-negative"),
        ("kafka: [1, 2]", "kafka", "a mapping"),
        ("kafka: {partitions: 1\n", "line 2", "valid YAML"),
        ("upkeep: {expire_older_than: 'a week'}", "upkeep.expire_older_than", "a duration"),
        ("upkeep: {expire_older_than: -5}", "upkeep.expire_older_than", "at least 0s"),
        ("upkeep: {orphan_older_than: 10m}", "upkeep.orphan_older_than", "at least 1h"),
        ("upkeep: {retain_last: 0}", "upkeep.retain_last", "a positive integer"),
        ("upkeep: {min_input_files: 1}", "upkeep.min_input_files", "at least 2"),
        ("upkeep: {target_file_size_mb: big}", "upkeep.target_file_size_mb", "a number"),
        ("upkeep: {keep: 3}", "upkeep.keep", "one of the known keys"),
        ("local: {flink_rest_port: 70000}", "local.flink_rest_port", "a port number"),
        ("jobs: {jobmanager: 'flink:web'}", "jobs.jobmanager", "host:port"),
        ("local: {flink_rpc_port: 0}", "local.flink_rpc_port", "a positive integer"),
        ("cells: [{name: c1, transport_url: 'rabbit://h', durable_exchanges: 'yes'}]",
         "cells[0].durable_exchanges", "true or false"),
    ],
)
def test_bad_line_names_file_key_and_expectation(tmp_path: Path, text: str, key: str,
                                                 expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert info.value.key == key
    assert expected in info.value.expected
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", [
    "cells: [{name: c, transport_url: 'zmq://u:hunter2@h'}]",
    "iceberg: {uri: 'jdbc:postgresql://h/db?user=u&password=hunter2'}",
    "iceberg: {uri: 'jdbc:postgresql://u:hunter2@h/db'}",
    "iceberg: {uri: 'jdbc:postgresql://u:hunter2@h:99999/db'}",
    "iceberg: {warehouse: 's3://bucket/wh', s3: {endpoint: 'http://u:hunter2@minio:9000'}}",
    "iceberg: {warehouse: 's3://bucket/wh', s3: {endpoint: 'http://u:hunter2@minio:x'}}",
])
def test_password_of_a_bad_url_is_not_in_the_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "hunter2" not in str(info.value)


def test_postgres_catalog_credentials_reach_both_clients_and_no_repr(tmp_path: Path) -> None:
    """The password reaches pyiceberg's URL (escaped) and Flink's JDBC options, never a repr."""
    from sqlalchemy.engine import make_url

    from stacktide.catalog import flink_catalog_options, sqlalchemy_uri

    path = write(tmp_path, "iceberg:\n  uri: jdbc:postgresql://db.example:6543/meter?sslmode=require\n"
                           "  user: st\n  password: 'p@ss:w/rd'\n")
    config = load_config(path)
    assert (config.iceberg.uri, config.iceberg.user) == (
        "jdbc:postgresql://db.example:6543/meter?sslmode=require", "st")
    assert "p@ss:w/rd" not in repr(config)
    url = make_url(sqlalchemy_uri(config.iceberg))
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database,
            dict(url.query)) == ("postgresql+psycopg2", "st", "p@ss:w/rd", "db.example", 6543,
                                 "meter", {"sslmode": "require"})
    options = flink_catalog_options(config.iceberg)
    assert (options["uri"], options["jdbc.user"], options["jdbc.password"]) == (
        config.iceberg.uri, "st", "p@ss:w/rd")
    bare = load_config(write(tmp_path, "iceberg: {uri: 'jdbc:postgresql://h/db'}"))
    assert make_url(sqlalchemy_uri(bare.iceberg)).username is None
    assert "jdbc.user" not in flink_catalog_options(bare.iceberg)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a readable YAML file"):
        load_config(tmp_path / "nope.yaml")


def test_upkeep_durations_read_as_written(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "upkeep: {expire_older_than: 36h, orphan_older_than: 2w,"
                                         " retain_last: 3, target_file_size_mb: 64}\n"))
    assert config.upkeep.expire_older_than == timedelta(hours=36)
    assert config.upkeep.orphan_older_than == timedelta(weeks=2)
    assert config.upkeep.target_file_size_bytes == 64 * 1024 * 1024
    assert load_config(DEFAULT_CONFIG).upkeep == UpkeepConfig()  # the shipped file says the defaults


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604800), ("1.5h", 5400), ("90m", 5400),
                                               ("0s", 0), ("2w", 1209600), (" 45 s ", 45)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize("text", ["", "7", "d7", "7 days", "-1d", "1d2h"])
def test_bad_durations_say_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match="a duration such as 7d"):
        parse_duration(text)


# --- an object-store warehouse (iceberg.warehouse: s3://…, iceberg.s3) ----------------------------

S3_OK = "iceberg:\n  warehouse: s3://meter-data/stacktide\n  s3:\n"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("iceberg: {warehouse: '/var/lib/wh'}", "iceberg.warehouse", "file:///path/to/warehouse or s3://"),
        ("iceberg: {warehouse: 'gs://b/p'}", "iceberg.warehouse", "s3://bucket/prefix"),
        ("iceberg: {warehouse: 'file://relative/wh'}", "iceberg.warehouse", "an absolute path"),
        ("iceberg: {warehouse: 's3://B_ad/p'}", "iceberg.warehouse", "3-63 lower-case letters"),
        ("iceberg: {warehouse: 's3://ab/p'}", "iceberg.warehouse", "3-63 lower-case letters"),
        ("iceberg: {warehouse: 's3:///p'}", "iceberg.warehouse", "3-63 lower-case letters"),
        ("iceberg: {warehouse: 's3://bkt/p?x=1'}", "iceberg.warehouse", "without '?' or '#'"),
        ("iceberg: {warehouse: 'file:///wh', s3: {region: eu-west-1}}", "iceberg.s3",
         "no s3 section with a file:// warehouse"),
        ("iceberg: {warehouse: 's3://bkt/p', s3: [1]}", "iceberg.s3", "a mapping"),
        ("iceberg: {warehouse: 's3://bkt/p', s3: {bucket: x}}", "iceberg.s3.bucket",
         "one of the known keys"),
        ("iceberg: {warehouse: 's3://bkt/p', s3: {endpoint: 'minio:9000'}}", "iceberg.s3.endpoint",
         "an http:// or https:// URL"),
        ("iceberg: {warehouse: 's3://bkt/p', s3: {endpoint: 'http://minio:9000/bkt'}}",
         "iceberg.s3.endpoint", "an http:// or https:// URL"),
        ("iceberg: {warehouse: 's3://bkt/p', s3: {endpoint: 'http://minio:port'}}",
         "iceberg.s3.endpoint", "with a port number"),
        ("iceberg: {warehouse: 's3://bkt/p', s3: {region: 'EU West'}}", "iceberg.s3.region",
         "a region name"),
        ("iceberg: {warehouse: 's3://bkt/p', s3: {path_style_access: yes please}}",
         "iceberg.s3.path_style_access", "true or false"),
        ("iceberg: {warehouse: 's3://bkt/p', s3: {access_key_id: AKIA1}}",
         "iceberg.s3.secret_access_key", "the secret key of access_key_id 'AKIA1'"),
        ("iceberg: {warehouse: 's3://bkt/p', s3: {secret_access_key: hunter2}}",
         "iceberg.s3.access_key_id", "the key id the secret key belongs to"),
    ],
)
def test_bad_object_store_line_names_file_key_and_expectation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str, expected: str) -> None:
    monkeypatch.delenv(S3_SECRET_ENV, raising=False)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.file, info.value.key) == (str(path), key)
    assert expected in info.value.expected
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("text", [
    "iceberg: {warehouse: 's3://bkt/p', s3: {endpoint: 'http://ak:hunter2@minio:9000'}}",
    "iceberg: {warehouse: 's3://ak:hunter2@bkt/p'}",
    "iceberg: {warehouse: 's3://bkt/p', s3: {access_key_id: ak, secret_access_key: 12345}}",
    "iceberg: {uri: 'jdbc:postgresql://h/db', user: u, password: 12345}",
])
def test_a_secret_of_a_bad_line_is_not_in_the_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "hunter2" not in str(info.value) and "12345" not in str(info.value)


def test_object_store_settings_reach_both_clients_and_no_repr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stacktide.catalog import flink_catalog_options, object_store_properties
    from stacktide.readers.iceberg_duckdb import s3_secret_statement

    monkeypatch.delenv(S3_SECRET_ENV, raising=False)
    config = load_config(write(tmp_path, S3_OK + "    endpoint: http://minio:9000/\n"
                               "    region: local\n    path_style_access: true\n"
                               "    access_key_id: stacktide\n    secret_access_key: \"s3cr'et\"\n"))
    assert config.iceberg.s3 == S3Config(endpoint="http://minio:9000", region="local",
                                         path_style_access=True, access_key_id="stacktide",
                                         secret_access_key="s3cr'et")
    assert config.iceberg.object_store and "s3cr'et" not in repr(config)
    shared = {"s3.endpoint": "http://minio:9000", "client.region": "local",
              "s3.path-style-access": "true", "s3.access-key-id": "stacktide",
              "s3.secret-access-key": "s3cr'et"}
    assert object_store_properties(config.iceberg) == shared  # pyiceberg's SqlCatalog
    options = flink_catalog_options(config.iceberg)  # Flink's CREATE CATALOG
    assert options == {"type": "iceberg", "catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
                       "uri": config.iceberg.uri, "warehouse": "s3://meter-data/stacktide",
                       "io-impl": "org.apache.iceberg.aws.s3.S3FileIO", **shared}
    statement = s3_secret_statement(config.iceberg)  # DuckDB's httpfs
    for part in ("KEY_ID 'stacktide'", "SECRET 's3cr''et'", "REGION 'local'", "URL_STYLE 'path'",
                 "ENDPOINT 'minio:9000'", "USE_SSL false", "SCOPE 's3://meter-data/stacktide'"):
        assert part in statement, statement


def test_object_store_defaults_and_the_secret_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stacktide.catalog import flink_catalog_options, object_store_properties

    monkeypatch.delenv(S3_SECRET_ENV, raising=False)
    aws = load_config(write(tmp_path, "iceberg: {warehouse: 's3://meter-data/st'}"))
    assert aws.iceberg.s3 == S3Config()  # AWS S3, us-east-1, the SDKs' default credentials
    assert object_store_properties(aws.iceberg) == {"client.region": "us-east-1",
                                                    "s3.path-style-access": "false"}
    local = load_config(write(tmp_path, "local: {state_dir: st}"))
    assert local.iceberg.s3 is None and not local.iceberg.object_store
    assert object_store_properties(local.iceberg) == {}
    assert "io-impl" not in flink_catalog_options(local.iceberg)

    monkeypatch.setenv(S3_SECRET_ENV, "from-env")
    text = S3_OK + "    access_key_id: stacktide\n"
    assert load_config(write(tmp_path, text)).iceberg.s3.secret_access_key == "from-env"  # type: ignore[union-attr]
    both = text + "    secret_access_key: from-file\n"
    assert load_config(write(tmp_path, both)).iceberg.s3.secret_access_key == "from-env"  # type: ignore[union-attr]
    monkeypatch.delenv(S3_SECRET_ENV)
    assert load_config(write(tmp_path, both)).iceberg.s3.secret_access_key == "from-file"  # type: ignore[union-attr]


def test_pipeline_jars_add_the_aws_bundle_for_an_object_store_only(tmp_path: Path) -> None:
    from stacktide.local.jars import GROUPS, pipeline_jars, read_checksums

    listed = read_checksums(Path(__file__).parents[2] / "jvm" / "checksums.sha256")
    assert "iceberg-aws" in GROUPS
    assert [n for n in listed if n.startswith("iceberg-aws/")] == [
        "iceberg-aws/iceberg-aws-bundle-1.11.0.jar"]
    # The bundle's Iceberg release is the Flink runtime's.
    assert "flink/iceberg-flink-runtime-2.1-1.11.0.jar" in listed
    jars = {"flink": [Path("f.jar")], "iceberg-aws": [Path("aws.jar")]}
    local = load_config(write(tmp_path, "local: {state_dir: st}"))
    s3 = load_config(write(tmp_path, "iceberg: {warehouse: 's3://meter-data/st'}"))
    assert pipeline_jars(local, jars) == (Path("f.jar"),)
    assert pipeline_jars(s3, jars) == (Path("f.jar"), Path("aws.jar"))
