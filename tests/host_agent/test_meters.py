"""The meter mapping: the shipped file loads; each kind of bad entry stops with file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_agent.meters import load_meters, meters_from_mapping
from stacktide.config import DEFAULT_CONFIG
from stacktide.errors import ConfigError

SHIPPED = DEFAULT_CONFIG.parent / "meters.yaml"

CEILOMETER_METERS = {
    "cpu": "ns", "vcpus": "vcpu", "memory.usage": "MB", "memory.resident": "MB", "memory.swap.in": "MB",
    "memory.swap.out": "MB", "disk.device.read.bytes": "B", "disk.device.read.requests": "request",
    "disk.device.write.bytes": "B", "disk.device.write.requests": "request", "disk.device.capacity": "B",
    "disk.device.allocation": "B", "disk.device.usage": "B", "network.incoming.bytes": "B",
    "network.outgoing.bytes": "B", "network.incoming.packets": "packet", "network.outgoing.packets": "packet",
    "network.incoming.packets.drop": "packet", "network.outgoing.packets.drop": "packet",
    "network.incoming.packets.error": "packet", "network.outgoing.packets.error": "packet",
    "power.state": "state",
}


def test_shipped_mapping_covers_ceilometers_compute_meters_with_their_units() -> None:
    meters = load_meters(SHIPPED)
    assert {m.name: m.unit for m in meters.meters} == CEILOMETER_METERS


def test_memory_usage_is_available_minus_usable_else_unused() -> None:
    usage = next(m for m in load_meters(SHIPPED).meters if m.name == "memory.usage")
    assert usage.value({"balloon.available": 4096, "balloon.usable": 1024, "balloon.unused": 2048}) == 3.0
    assert usage.value({"balloon.available": 4096, "balloon.unused": 2048}) == 2.0
    assert usage.value({"balloon.available": 4096}) is None


GOOD = {"name": "cpu", "group": "cpu", "stat": "cpu.time", "type": "counter", "unit": "ns"}


@pytest.mark.parametrize("change, key, expected", [
    ({"group": "disk"}, "meters[1] (cpu).group", "one of state, cpu"),
    ({"type": "cumulative"}, "meters[1] (cpu).type", "counter or gauge"),
    ({"scale": 0}, "meters[1] (cpu).scale", "a positive number"),
    ({"scale": "x"}, "meters[1] (cpu).scale", "a positive number"),
    ({"unit": ""}, "meters[1] (cpu).unit", "a non-empty string"),
    ({"stat": None}, "meters[1] (cpu).stat", "a non-empty string"),
    ({"name": "a|b"}, "meters[1] (a|b).name", "a non-empty string"),
    ({"minus": [1]}, "meters[1] (cpu).minus", "a stats key"),
    ({"sacle": 2}, "meters[1] (cpu).sacle", "one of the known keys"),
])
def test_a_bad_entry_names_file_entry_and_key(change: dict[str, object], key: str, expected: str) -> None:
    vcpus = {**GOOD, "name": "vcpus", "stat": "vcpu.current", "group": "vcpu", "type": "gauge"}
    with pytest.raises(ConfigError) as err:
        meters_from_mapping({"meters": [vcpus, {**GOOD, **change}]}, "conf/meters.yaml")
    assert err.value.file == "conf/meters.yaml"
    assert err.value.key == key
    assert err.value.expected.startswith(expected)


def test_whole_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unique meter names"):
        meters_from_mapping({"meters": [GOOD, GOOD]}, "m.yaml")
    with pytest.raises(ConfigError, match="non-empty list"):
        meters_from_mapping({"meters": []}, "m.yaml")
    with pytest.raises(ConfigError, match="readable YAML"):
        load_meters(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("meters: [")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_meters(tmp_path / "bad.yaml")
