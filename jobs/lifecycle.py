"""One nova instance's state, folded from its notifications in any order, any number of times.

Each notification is a snapshot of the instance at its own time (``generated``). The state
keeps the usage-relevant part of each as a :class:`Sample` ordered by ``(at, key)`` (``key``
hashes the message id: a deterministic tie-break), last-writer-wins registers for the other
fields, and min-merged ``first_launched``/``deleted_at``: unions, maxima and minima, so
:func:`apply` commutes and a redelivery (same id, same time) changes nothing. A late event
is inserted where it belongs; jobs/usage.py recomputes what it touches and compacts what no
later event can change (older events are refused: :func:`is_late`). What each event sets
and where each field lives is data (``conf/lifecycle.yaml``), checked by :func:`load_rules`.
"""

from __future__ import annotations

import fnmatch
import hashlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

import yaml

from stacktide.config import REPO_ROOT, _Reader
from stacktide.errors import ConfigError
from stacktide.schema import Envelope, time_us

DEFAULT_RULES = REPO_ROOT / "conf" / "lifecycle.yaml"
FLAVOR_LEAVES = ("flavor_id", "flavor_name", "vcpus", "memory_mb", "root_gb", "ephemeral_gb",
                 "instance_type_id")
IMAGE_LEAVES = ("image_ref", "os_type", "os_architecture", "os_distro", "os_version")
TIMES = ("launched_at", "deleted_at", "audit_period_beginning", "audit_period_ending")
LEAVES = ("state", "old_state", "task_state", "old_task_state", "power_state", *FLAVOR_LEAVES,
          *IMAGE_LEAVES, "tenant_id", "user_id", "host", *TIMES)
GROUPS = {"flavor": FLAVOR_LEAVES, "image": IMAGE_LEAVES, "owner": ("tenant_id", "user_id"), **{
    n: (n,) for n in ("state", "task_state", "power_state", "host", "launched_at", "deleted_at")}}
REGISTERS = ("task_state", "power_state", "tenant_id", "user_id", "host", "last_event")
AUDIT_LEAVES = frozenset((*TIMES, *FLAVOR_LEAVES, *IMAGE_LEAVES, "tenant_id"))
END = 2**62  # "after everything", in microseconds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ABSENT = object()
STATE, FLAVOR, IMAGE, LAUNCHED = (attrgetter(n) for n in ("state", "flavor", "image", "launched"))


@dataclass(frozen=True, slots=True)
class StateMeaning:
    power_state: str = "nostate"
    running: bool = False
    exists: bool = True
    audited: bool = True


@dataclass(frozen=True, slots=True)
class Effect:
    sets: frozenset[str] = frozenset()  # leaves
    audit: bool = False


@dataclass(frozen=True, slots=True)
class Rules:
    states: Mapping[str, StateMeaning]
    events: Mapping[str, Effect]  # exact names first, then the patterns in file order
    paths: Mapping[str, Mapping[str, tuple[tuple[str, ...], ...]]]  # format -> leaf -> paths

    def effect(self, event_type: str) -> Effect | None:
        found = self.events.get(event_type)
        return found or next((e for p, e in self.events.items() if "*" in p
                              and fnmatch.fnmatchcase(event_type, p)), None)

    def meaning(self, state: str | None) -> StateMeaning:
        return self.states.get(state or "") or StateMeaning()


def load_rules(path: str | Path | None = None) -> Rules:
    """Read and check conf/lifecycle.yaml (or *path*); a bad entry raises ConfigError."""
    file = str(path or DEFAULT_RULES)
    try:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(file, "(file)", "a readable YAML file", str(exc).splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise ConfigError(file, "(top level)", "a mapping", data)
    top = _Reader(file, data, "")
    top.unknown({"states", "groups", "events", "fields"})
    states, groups, events, paths = {}, dict(GROUPS), {}, {}
    for name, r in _sections(top, "states", set(StateMeaning.__slots__)):
        states[name] = StateMeaning(**{f.name: r.get(f.name, type(f.default), f.default)
                                       for f in fields(StateMeaning)})

    def leaves(r: _Reader, key: str) -> frozenset[str]:
        names = r.get(key, list, [])
        if not all(isinstance(n, str) and n in groups for n in names):
            raise r.fail(key, f"a list of fields or groups among {', '.join(groups)}", names)
        return frozenset(leaf for n in names for leaf in groups[n])

    for name in (g := top.section("groups")).data:
        groups[name] = tuple(leaves(g, name))
    for name, r in _sections(top, "events", {"sets", "audit"}):
        if ("sets" in r.data) == ("audit" in r.data):
            raise top.fail(f"events.{name}", "exactly one of sets: [...] or audit: true", r.data)
        events[name] = Effect(leaves(r, "sets"), r.get("audit", bool, False))
    top.section("fields").unknown({"legacy", "versioned"})
    for fmt, r in _sections(top, "fields", set(LEAVES)):
        paths[fmt] = {leaf: tuple(tuple(p.split("/")) for p in r.names(leaf, ())) for leaf in r.data}
    return Rules(states, dict(sorted(events.items(), key=lambda kv: "*" in kv[0])), paths)


def rules_document(rules: Rules) -> dict[str, Any]:
    """*rules* as JSON data for the JVM's ``stacktide.lifecycle.Rules``: the file keeps one
    reader and one set of checks (:func:`load_rules`), and both sides run the same rules."""
    return {"states": {name: [m.power_state, m.running, m.exists, m.audited]
                       for name, m in rules.states.items()},
            "events": [[name, sorted(e.sets), e.audit] for name, e in rules.events.items()],
            "paths": {fmt: {leaf: [list(p) for p in ways] for leaf, ways in leaves.items()}
                      for fmt, leaves in rules.paths.items()}}


def _sections(top: _Reader, name: str, known: set[str]) -> Iterator[tuple[str, _Reader]]:
    """The sub-mappings of a required, non-empty section, each with only *known* keys."""
    section = top.section(name)
    if not section.data:
        raise top.fail(name, "a non-empty mapping (the section is required)")
    for key in map(str, section.data):
        (r := section.section(key)).unknown(known)
        yield key, r


@dataclass(frozen=True, slots=True)
class Flavor:
    flavor_id: str
    flavor_name: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    root_gb: int | None = None
    ephemeral_gb: int | None = None
    instance_type_id: str | None = None


@dataclass(frozen=True, slots=True)
class Image:
    image_ref: str | None
    os_type: str | None = None
    os_architecture: str | None = None
    os_distro: str | None = None
    os_version: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:  # what one notification says about one instance
    cell: str
    instance_id: str
    message_id: str
    event_type: str
    at: int  # generated, microseconds since the epoch
    key: int
    effect: Effect
    values: Mapping[str, Any]  # the leaves the event sets; None: set to empty
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    at: int
    key: int
    state: str | None = None
    flavor: Flavor | None = None
    image: Image | None = None
    launched: int | None = None


@dataclass(frozen=True, slots=True)
class Launch:  # a launched_at the stream saw, as the first snapshot carrying it described it
    launched: int
    at: int
    key: int
    flavor: Flavor | None = None
    image: Image | None = None


@dataclass(frozen=True, slots=True)
class InstanceState:
    cell: str
    instance_id: str
    samples: tuple[Sample, ...] = ()
    registers: Mapping[str, tuple[int, int, Any]] = field(default_factory=dict)  # (at, key, value)
    first_launched: int | None = None
    deleted_at: int | None = None
    observed_from: int | None = None
    launches: tuple[Launch, ...] = ()
    horizon: int = -END

    def register(self, name: str) -> Any:
        return self.registers.get(name, (0, 0, None))[2]


def to_us(text: Any) -> int | None:
    """A nova time string (``str(datetime)``, ISO with Z, an offset or none) in UTC microseconds."""
    try:
        return time_us(text)
    except (AttributeError, TypeError, ValueError):  # not text, or not a time
        return None


def when(us: int | None) -> datetime | None:
    """Microseconds since the epoch as a UTC datetime (None stays None)."""
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def message_key(message_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=4).digest())


def observe(env: Envelope, rules: Rules) -> Observation | None:
    """The observation of *env*; None when it is about no instance or matches no rule."""
    effect = rules.effect(env.event_type)
    if effect is None or not env.instance_id or not isinstance(env.payload, dict):
        return None
    root = env.payload.get("nova_object.data", env.payload) if env.format == "versioned" else env.payload
    values: dict[str, Any] = {}
    paths = rules.paths.get(env.format, {})
    for leaf in effect.sets | (AUDIT_LEAVES if effect.audit else {"old_state", "old_task_state"}):
        found, value = _lookup(root, paths.get(leaf, ()))
        if found:
            values[leaf] = to_us(value) if leaf in TIMES else (
                str(value) if isinstance(value, (str, int)) else None)
    return Observation(env.cell, env.instance_id, env.message_id, env.event_type,
                       to_us(env.generated) or 0, message_key(env.message_id), effect, values,
                       env.request_id)


def _lookup(root: Any, paths: tuple[tuple[str, ...], ...]) -> tuple[bool, Any]:
    """(found, value) of the first path holding a value; found but None if only empties."""
    present = False
    for path in paths:
        node = root
        for step in path:
            node = node.get(step, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT:
            present = True
            if node is not None and node != "":
                return True, node
    return present, None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else None


def composites(values: Mapping[str, Any]) -> tuple[Flavor | None, Image | None]:
    """The flavor and image an observation describes, when it describes them."""
    g = values.get
    flavor = Flavor(str(g("flavor_id")), g("flavor_name"), _int(g("vcpus")), _int(g("memory_mb")),
                    _int(g("root_gb")), _int(g("ephemeral_gb")), g("instance_type_id")
                    ) if g("flavor_id") else None
    image = Image(*map(g, IMAGE_LEAVES)) if any(map(g, IMAGE_LEAVES)) else None
    return flavor, image


def is_late(state: InstanceState, obs: Observation) -> bool:
    return obs.at < state.horizon


def _min(*values: int | None) -> int | None:
    return min((v for v in values if v is not None), default=None)


def apply(state: InstanceState, obs: Observation) -> InstanceState:
    """Fold *obs* into *state*: commutative and idempotent (see the module docstring)."""
    if obs.effect.audit or not obs.effect.sets or is_late(state, obs):
        return state
    v, stamp = obs.values, (obs.at, obs.key)
    regs = dict(state.registers)
    for name in REGISTERS:
        value = obs.event_type if name == "last_event" else v.get(name, _ABSENT)
        if value is not _ABSENT and (name not in regs or regs[name][:2] < stamp):
            regs[name] = (obs.at, obs.key, value)
    flavor, image = composites(v)
    launched = v.get("launched_at")
    sample = Sample(obs.at, obs.key, v.get("state"), flavor, image, launched)
    samples, launches, seen = state.samples, state.launches, state.observed_from
    if sample != Sample(obs.at, obs.key):
        i = bisect_right(samples, stamp, key=lambda s: (s.at, s.key))
        if not (i and (samples[i - 1].at, samples[i - 1].key) == stamp):
            samples = (*samples[:i], sample, *samples[i:])
        seen = _min(seen, obs.at)
    if launched is not None:
        old = next((x for x in launches if x.launched == launched), None)
        if old is None or (old.at, old.key) > stamp:
            new = Launch(launched, obs.at, obs.key, flavor, image)
            launches = tuple(sorted([*(x for x in launches if x is not old), new],
                                    key=attrgetter("launched")))
    return replace(state, samples=samples, registers=regs, launches=launches, observed_from=seen,
                   first_launched=_min(state.first_launched, launched),
                   deleted_at=_min(state.deleted_at, v.get("deleted_at")))


def latest(state: InstanceState, at: int, get: Callable[[Sample], Any], key: int = END) -> Any:
    """The newest value *get* finds at or before (at, key); before any, the earliest one."""
    i = bisect_right(state.samples, (at, key), key=lambda s: (s.at, s.key))
    for s in reversed(state.samples[:i]):
        if (value := get(s)) is not None:
            return value
    return next((x for s in state.samples[i:] if (x := get(s)) is not None), None)
