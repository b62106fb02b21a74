"""The meter mapping (``conf/meters.yaml``): libvirt stats keys -> Ceilometer meters, as data.

Loaded and checked once at start-up; a bad entry stops the agent with a
:class:`~stacktide.errors.ConfigError` naming the file, the entry (index and meter name) and
the key, rather than being skipped with a log line and silently missing from every poll.
Evaluation works on one domain's record as libvirt's bulk API returns it (``cpu.time``,
``block.0.rd.bytes`` …); the per-domain fallback fills records with the same keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacktide.errors import ConfigError

# group -> (marker key: present in a record when the bulk stats carried the group,
#           per-device key prefix or None)
GROUPS: dict[str, tuple[str, str | None]] = {
    "state": ("state.state", None),
    "cpu": ("cpu.time", None),
    "vcpu": ("vcpu.current", None),
    "balloon": ("balloon.current", None),
    "block": ("block.count", "block"),
    "interface": ("net.count", "net"),
}
TYPES = {"counter": "counter", "gauge": "gauge"}


@dataclass(frozen=True, slots=True)
class MeterDef:
    name: str
    group: str
    stat: str
    type: str
    unit: str
    scale: float = 1.0
    minus: tuple[str, ...] = ()

    def value(self, record: Mapping[str, Any], prefix: str = "") -> float | None:
        """This meter's value in *record* (keys under *prefix* for a device), or None."""
        raw = record.get(prefix + self.stat)
        if raw is None or isinstance(raw, str):
            return None
        value = float(raw)
        if self.minus:
            sub = next((record[prefix + k] for k in self.minus if record.get(prefix + k) is not None), None)
            if sub is None:
                return None
            value -= float(sub)
        return value * self.scale


@dataclass(frozen=True, slots=True)
class Reading:
    """One meter's value for one domain (and device)."""

    meter: MeterDef
    value: float
    device: str | None


class MeterMap:
    """The checked mapping, grouped for evaluation."""

    def __init__(self, meters: tuple[MeterDef, ...], source: str = "") -> None:
        self.meters, self.source = meters, source
        self.groups = tuple(sorted({m.group for m in meters}))
        self._plain = tuple(m for m in meters if GROUPS[m.group][1] is None)
        self._device = tuple((GROUPS[m.group][1], m) for m in meters if GROUPS[m.group][1] is not None)

    def readings(self, record: Mapping[str, Any]) -> Iterator[Reading]:
        for m in self._plain:
            value = m.value(record)
            if value is not None:
                yield Reading(m, value, None)
        for prefix, m in self._device:
            for i in range(int(record.get(f"{prefix}.count", 0))):
                name = record.get(f"{prefix}.{i}.name")
                if not name:
                    continue
                value = m.value(record, f"{prefix}.{i}.")
                if value is not None:
                    yield Reading(m, value, str(name))


def load_meters(path: str | Path) -> MeterMap:
    file = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(file, "(file)", "a readable YAML file", exc.strerror) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(file, "(file)", "valid YAML", str(exc).splitlines()[0]) from exc
    return meters_from_mapping(data, file)


def meters_from_mapping(data: Any, file: str) -> MeterMap:
    if not isinstance(data, Mapping) or not isinstance(data.get("meters"), list) or not data["meters"]:
        raise ConfigError(file, "meters", "a non-empty list of meter entries", data)
    out: list[MeterDef] = []
    for i, entry in enumerate(data["meters"]):
        out.append(_entry(entry, file, i))
    names = [m.name for m in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(file, "meters", "unique meter names", dup)
    return MeterMap(tuple(out), file)


def _entry(entry: Any, file: str, i: int) -> MeterDef:
    where = f"meters[{i}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(file, where, "a mapping with name, group, stat, type, unit", entry)
    if isinstance(entry.get("name"), str):
        where = f"meters[{i}] ({entry['name']})"
    known = {"name", "group", "stat", "type", "unit", "scale", "minus"}
    extra = sorted(set(entry) - known)
    if extra:
        raise ConfigError(file, f"{where}.{extra[0]}", f"one of the known keys {', '.join(sorted(known))}")

    def text(key: str) -> str:
        value = entry.get(key)
        if not isinstance(value, str) or not value or any(c in value for c in ",|#:\n"):
            raise ConfigError(file, f"{where}.{key}", "a non-empty string without , | # : or newline",
                              value)
        return value

    group = entry.get("group")
    if group not in GROUPS:
        raise ConfigError(file, f"{where}.group", f"one of {', '.join(GROUPS)}", group)
    kind = entry.get("type")
    if kind not in TYPES:
        raise ConfigError(file, f"{where}.type", "counter or gauge", kind)
    scale = entry.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        raise ConfigError(file, f"{where}.scale", "a positive number", scale)
    minus = entry.get("minus", [])
    if isinstance(minus, str):
        minus = [minus]
    if not isinstance(minus, list) or not all(isinstance(k, str) and k for k in minus):
        raise ConfigError(file, f"{where}.minus", "a stats key or a list of them", minus)
    return MeterDef(name=text("name"), group=group, stat=text("stat"), type=kind, unit=text("unit"),
                    scale=float(scale), minus=tuple(minus))
