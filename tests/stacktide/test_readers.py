"""The readers over real Iceberg tables (an SQLite catalog), without Flink.

The tables are filled through pyiceberg with the rows jobs/requests.py computes from
simulated traffic with failing requests (what the request job appends), an older revision
of some rows included: the readers must show the current rows, and their figures must be
the ones recomputed here from the same rows. The same readers run on the tables the real
jobs wrote in tests/e2e/test_requests_path.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from jobs.requests import Timeline, error_rows, group_key, load_rules, observe, request_row
from stacktide.catalog import ensure_table, load_catalog
from stacktide.cli import main
from stacktide.config import Config, config_from_mapping
from stacktide.schema import TABLES, Envelope, parse_time
from stacktide.simulate.cloud import Params
from stacktide.simulate.traffic import Traffic, generate
from tests.helpers import simulated_envelopes

RULES = load_rules()
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def envelopes(traffic: Traffic) -> list[Envelope]:
    return simulated_envelopes(traffic, NOW)


def append(config: Config, name: str, rows: list[dict[str, Any]]) -> None:
    table = ensure_table(load_catalog(config.iceberg), config.iceberg, TABLES[name])
    schema = table.schema().as_arrow()
    table.append(pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows],
                                      schema=schema))


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Traffic, Path]]:
    tmp = tmp_path_factory.mktemp("readers")
    data = {"cells": [{"name": "cell1", "transport_url": "rabbit://guest:guest@127.0.0.1:1/"}],
            "local": {"state_dir": str(tmp / "state")}}
    conf = tmp / "stacktide.yaml"
    conf.write_text(yaml.safe_dump(data))
    config = config_from_mapping(data, str(conf), base=tmp)
    traffic = generate(Params(seed=5, instances=30, hours=6), "legacy", failures=2)
    items = envelopes(traffic)
    timelines: dict[str, Timeline] = {}
    for env in items:
        key = group_key(env.global_request_id, env.request_id) or f"message:{env.message_id}"
        timelines.setdefault(key, Timeline(key)).add(observe(env, RULES))
    requests, errors = [], []
    for t in timelines.values():
        if (row := request_row(t, RULES, closed=True)) is not None:
            requests.append({**row, "revision": 1})
            requests.append({**row, "outcome": "open", "revision": 0})  # superseded
        errors += [{**r, "revision": 0} for r in error_rows(t, RULES)]
    append(config, "requests", requests)
    append(config, "errors", errors)
    append(config, "notifications", [{
        **{k: getattr(e, k) for k in TABLES["notifications"].column_names()},
        "generated": parse_time(e.generated), "received": parse_time(e.received),
        "payload": json.dumps(e.payload)} for e in {e.message_id: e for e in items}.values()])
    append(config, "instances", [{
        "cell": i["cell"], "instance_id": i["instance_id"], "tenant_id": i["tenant_id"],
        "image_ref": f"image-{n % 3}", "revision": 0}
        for n, i in enumerate(traffic.truth["instances"])])
    yield config, traffic, conf


def cli(conf: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["--config", str(conf), *argv])
    captured = capsys.readouterr()
    if code != 0:
        return code, captured.err
    return code, json.loads(captured.out) if "--output" in argv else captured.out


def test_request_shows_the_current_row_its_events_and_root_cause(
        tables: tuple[Config, Traffic, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, traffic, conf = tables
    truth = next(f for f in traffic.truth["failing_requests"] if f["kind"] == "volume_attach")
    code, found = cli(conf, capsys, "request", truth["request_id"], "--output", "json")
    assert code == 0 and found["request"]["outcome"] == "error"  # revision 1, not 0's "open"
    assert found["request"]["root_cause_message_id"] == truth["root_cause_message_id"]
    services = {e["service"] for e in found["events"]}
    assert "volume" in services  # cinder's part, joined by the global request id
    code, text = cli(conf, capsys, "request", "req-none")
    assert code == 2 and "no request 'req-none'" in text


def test_timings_equal_the_operations_recomputed(
        tables: tuple[Config, Traffic, Path], capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    config, _, conf = tables
    from stacktide.readers.common import read

    want: dict[str, list[float]] = {}
    for r in read(config, "requests"):
        for o in r["operations"]:
            if o["duration_s"] is not None:
                want.setdefault(o["operation"], []).append(o["duration_s"])
    png = tmp_path / "t.png"
    code, rows = cli(conf, capsys, "timings", "--output", "json", "--plot", str(png))
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    assert {r["operation"]: (r["n"], r["min_s"], r["max_s"]) for r in rows} == {
        k: (len(v), min(v), max(v)) for k, v in want.items()}


def test_errors_group_by_masked_message_and_windows_apply(
        tables: tuple[Config, Traffic, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, traffic, conf = tables
    code, groups = cli(conf, capsys, "errors", "--output", "json", "--limit", "500")
    nvh = [g for g in groups if g["exception"] == "NoValidHost"]
    # each of the 2 requests: the legacy and the versioned conductor error, one message
    assert code == 0 and len(nvh) == 1 and (nvh[0]["n"], nvh[0]["requests"]) == (4, 2)
    start = traffic.truth["start"]
    code, none = cli(conf, capsys, "errors", "--list", "--until", start, "--output", "json")
    assert code == 0 and none == []
    code, text = cli(conf, capsys, "errors", "--since", "yesterday")
    assert code == 2 and "--since: 'yesterday' is not an ISO-8601" in text


def test_kpi_by_image_and_slow_requests(
        tables: tuple[Config, Traffic, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, _, conf = tables
    code, found = cli(conf, capsys, "kpi", "--by", "image", "--slow", "5", "--output", "json")
    assert code == 0
    images = {r["image"] for r in found["operations"]}
    assert {"image-0", "image-1", "image-2"} <= images
    timed = [r for r in found["operations"] if r["max_s"] is not None]
    assert timed and all(r["p50_s"] <= r["p90_s"] <= r["p97_s"] <= r["max_s"] for r in timed)
    code, text = cli(conf, capsys, "kpi", "--by", "hour")
    assert code == 0 and "operations by hour" in text and "compute_task.build_instances" in text
    slow = [r["duration_s"] for r in found["slow_requests"]]
    assert slow == sorted(slow, reverse=True) and all(d > 5 for d in slow)


def test_uuid_lists_every_notification_of_an_instance(
        tables: tuple[Config, Traffic, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, traffic, conf = tables
    truth = next(f for f in traffic.truth["failing_requests"] if f["kind"] == "compute_error")
    code, found = cli(conf, capsys, "uuid", truth["instance_id"], "--output", "json")
    assert code == 0
    assert {e["message_id"] for e in found["events"] if e["error"]} == set(truth["errors"])
