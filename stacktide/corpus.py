"""The conformance corpus, read in place, as the AMQP messages real senders would publish.

Every notification of the corpus (see its README.md) becomes one :class:`Sample`: the
exchange, routing key and body an oslo.messaging notifier would have used, plus what a
consumer should make of it (event type, priority, message id, instance id, format).

- ``nova-versioned/``: ``$ref`` resolved as nova's ``json_ref`` does; the missing oslo
  fields (message id, timestamp, ``_unique_id``, context) are added, the context ids
  taken from the payload where it has them. ``common_payloads/`` are fragments.
- ``legacy/stacktach-notigen/``: placeholders rendered deterministically; the publisher is
  ``scheduler.<host>`` for ``scheduler.*`` events and ``compute.<host>`` otherwise.
- ``legacy/ceilometer/``: exchange by folder (cinder's is ``openstack``); ``misc/`` is
  converted from ceilometer's listener layout (``ctxt``, ``metadata``) to the wire layout.
- ``legacy/yagi/``: as found; a missing priority is ``info`` in the routing key only.

Two repairs make the fixtures publishable as a real sender's messages (each is recorded in
``Sample.repairs``; ``as_found=True`` turns them off): a timestamp mangled in the source
tests (``2014-05-3107: 19: 43.463101``) is restored to oslo's form, and a message id
already used by an earlier sample is replaced (uuid5 of the source), since the fixtures
were copied from one another and a real sender never reuses one.

Everything is deterministic for a given ``seed``: each file draws from its own
``random.Random(f"{seed}:{path}")``.
"""

from __future__ import annotations

import json
import os
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from stacktide.config import REPO_ROOT
from stacktide.errors import StacktideError

Format = Literal["legacy", "versioned"]
ENVELOPES = ("1.0", "2.0", "mixed")
VERSIONED, NOTIGEN = "nova-versioned", "legacy/stacktach-notigen/templates"
CEILOMETER, YAGI = "legacy/ceilometer", "legacy/yagi"
FOLDER_EXCHANGES = {"nova": "nova", "glance": "glance", "neutron": "neutron", "cinder": "openstack"}
MISC_EXCHANGES = {"compute.": "nova", "objectstore.": "swift"}  # by event type prefix

_PLACEHOLDER = re.compile(r"\[\[\[\[([A-Za-z0-9_]+)\]\]\]\]")
_MANGLED_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})(\d{2}): (\d{2}): (\d{2}(?:\.\d+)?)")
_ID_NAMESPACE = uuid.UUID("0b6f9d8e-2c1a-4f5e-8d7c-3a2b1c0d9e8f")


class CorpusError(StacktideError):
    """The corpus is missing, or one of its files is not what this module knows."""


@dataclass(frozen=True, slots=True)
class Sample:
    source: str  # path relative to the corpus root, plus "#<index>" in multi-notification files
    exchange: str
    routing_key: str
    body: bytes
    event_type: str
    priority: str  # lower case
    message_id: str
    instance_id: str | None  # the instance the data says it concerns, if any
    fmt: Format
    envelope: Literal["1.0", "2.0"] = "2.0"
    repairs: tuple[str, ...] = ()


def corpus_root() -> Path:
    """``$STACKTIDE_CORPUS``, else ``shared/corpus`` beside the repository."""
    env = os.environ.get("STACKTIDE_CORPUS")
    root = Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "corpus"
    if not (root / VERSIONED).is_dir():
        raise CorpusError(f"no notification corpus at {root} (no {VERSIONED}/ there); "
                          "set STACKTIDE_CORPUS to its directory")
    return root


def iter_samples(root: Path | None = None, *, envelope: str = "2.0", seed: int = 0,
                 as_found: bool = False) -> Iterator[Sample]:
    """Every notification of the corpus, in a fixed order, as a wire message.

    *envelope*: ``"2.0"`` (messagingv2), ``"1.0"`` (flat) or ``"mixed"`` (alternating).
    """
    if envelope not in ENVELOPES:
        raise ValueError(f"envelope must be one of {', '.join(ENVELOPES)}, not {envelope!r}")
    root = root or corpus_root()
    cache: dict[Path, Any] = {}
    ids: dict[str, str] = {}
    for n, sample in enumerate(_all(root, seed, cache, as_found)):
        wrap: Literal["1.0", "2.0"] = "2.0" if envelope == "2.0" or (
            envelope == "mixed" and n % 2 == 0) else "1.0"
        msg = json.loads(sample.body)
        if not as_found:
            sample = _unique_id(sample, msg, ids, seed)
        if not isinstance(msg.get("message_id"), str):
            raise CorpusError(f"{sample.source}: no message_id")
        body = json.dumps(msg) if wrap == "1.0" else json.dumps(
            {"oslo.version": "2.0", "oslo.message": json.dumps(msg)})
        yield replace(sample, body=body.encode(), envelope=wrap, message_id=msg["message_id"])


def count_files(root: Path | None = None) -> dict[str, int]:
    """How many notifications each corpus file holds, for every file that holds any.

    Walks every file under *root* on its own (not the way :func:`iter_samples` does) and
    fails on a file it cannot classify, so a test can prove no file was skipped.
    """
    root = root or corpus_root()
    counts: dict[str, int] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if (rel in ("README.md", "WIRE-FORMAT.md") or path.name == "MANIFEST.json"
                or rel.startswith(("ceilometer/", f"{VERSIONED}/common_payloads/"))):
            continue
        doc = _load(path, {})
        if isinstance(doc, list) and doc and isinstance(doc[0], dict) and "time_map" in doc[0]:
            counts[rel] = len(doc) - 1
        elif isinstance(doc, dict) and "event_type" in doc:
            counts[rel] = 1
        else:
            raise CorpusError(f"{rel}: neither a notification nor a notigen template")
    return counts


def _all(root: Path, seed: int, cache: dict[Path, Any], as_found: bool) -> Iterator[Sample]:
    yield from _versioned(root, seed, cache)
    yield from _notigen(root, seed, cache)
    yield from _ceilometer(root, cache, as_found)
    yield from _yagi(root, cache)


def _sample(source: str, exchange: str, topic: str, msg: dict[str, Any],
            instance_id: str | None, fmt: Format, repairs: tuple[str, ...] = ()) -> Sample:
    raw = msg.get("priority")
    priority = raw.lower() if isinstance(raw, str) else "info"
    return Sample(source, exchange, f"{topic}.{priority}", json.dumps(msg).encode(),
                  msg["event_type"], priority, str(msg.get("message_id", "")), instance_id,
                  fmt, repairs=repairs)


def _versioned(root: Path, seed: int, cache: dict[Path, Any]) -> Iterator[Sample]:
    for path in sorted((root / VERSIONED).glob("*.json")):
        rel = path.relative_to(root).as_posix()
        rng = random.Random(f"{seed}:{rel}")
        doc = _resolve(_load(path, cache), path.parent, cache, 0)
        payload = doc.get("payload")
        data = payload.get("nova_object.data", {}) if isinstance(payload, dict) else {}
        ids = {k: v for k, v in data.items() if isinstance(v, str)}
        msg = {
            "message_id": str(_uuid4(rng)), "publisher_id": doc.get("publisher_id"),
            "event_type": doc.get("event_type"), "priority": doc.get("priority"),
            "payload": payload, "timestamp": str(_base_time(rng, 2024)),
            "_unique_id": _uuid4(rng).hex,
            "_context_request_id": ids.get("request_id") or f"req-{_uuid4(rng)}",
            "_context_global_request_id": f"req-{_uuid4(rng)}",
            "_context_project_id": ids.get("tenant_id") or ids.get("project_id")
            or _uuid4(rng).hex,
            "_context_user_id": ids.get("user_id") or _uuid4(rng).hex,
        }
        instance = ids.get("uuid") if str(msg["event_type"]).startswith("instance.") else (
            ids.get("instance_uuid"))
        yield _sample(rel, "nova", "versioned_notifications", msg, instance, "versioned")


def _notigen(root: Path, seed: int, cache: dict[Path, Any]) -> Iterator[Sample]:
    for path in sorted((root / NOTIGEN).glob("*.json")):
        rel = path.relative_to(root).as_posix()
        header, *bodies = _load(path, cache)
        render = _Renderer(header, random.Random(f"{seed}:{rel}"), rel)
        msgs = [render.message(body) for body in bodies]
        instances = {m["payload"].get("instance_id") for m in msgs} - {None}
        if len(instances) != 1:
            raise CorpusError(f"{rel}: expected one payload instance_id, found {instances}")
        (instance,) = instances
        for i, msg in enumerate(msgs, 1):
            yield _sample(f"{rel}#{i}", "nova", "notifications", msg, instance, "legacy")


class _Renderer:
    """Deterministic values for notigen's ``[[[[NAME]]]]`` placeholders, one file's worth."""

    def __init__(self, header: dict[str, Any], rng: random.Random, source: str) -> None:
        self.rng, self.source, self.time_map = rng, source, header["time_map"]
        self.base = _base_time(rng, 2014)
        self.values: dict[str, str] = {}

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        service = "scheduler" if str(body.get("event_type")).startswith("scheduler.") else (
            "compute")
        self.values["publisher_id"] = f"{service}.{self.value('host')}"
        rendered: dict[str, Any] = self.render(body)
        return rendered

    def render(self, node: Any) -> Any:
        if isinstance(node, dict):
            return {self.render(k): self.render(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.render(v) for v in node]
        if isinstance(node, str) and "[[[[" in node:
            return _PLACEHOLDER.sub(lambda m: self.value(m.group(1)), node)
        return node

    def value(self, name: str) -> str:
        if name not in self.values:
            self.values[name] = self._new(name)
        return self.values[name]

    def _new(self, name: str) -> str:
        rng, (kind, _, n) = self.rng, name.rpartition("_")
        if kind == "DT" and n.isdigit():
            if f"[[[[{name}]]]]" not in self.time_map:
                raise CorpusError(f"{self.source}: [[[[{name}]]]] is not in the time_map")
            days, seconds, micros = self.time_map[f"[[[[{name}]]]]"]
            return str(self.base + timedelta(days, seconds, micros))

        def octet() -> int:
            return rng.randrange(1, 255)

        made = {
            "UUID": lambda: str(_uuid4(rng)), "XUUID": lambda: _uuid4(rng).hex,
            "V4": lambda: f"10.{octet()}.{octet()}.{octet()}",
            "V6": lambda: f"2001:db8:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}",
        }.get(kind) if n.isdigit() else {
            "tenant_id": lambda: str(rng.randrange(100_000, 10_000_000)),
            "user_id": lambda: f"user{rng.randrange(10_000):04d}",
            "host": lambda: f"c-10-{octet()}-{octet()}-{octet()}",
            "node": lambda: f"hv-{rng.getrandbits(32):08x}",
            "hostname": lambda: f"server-{rng.getrandbits(24):06x}",
            "display_name": lambda: f"server-{rng.getrandbits(24):06x}",
            "image_name": lambda: f"image-{rng.getrandbits(24):06x}",
            "reservation_id": lambda: f"r-{rng.getrandbits(32):08x}",
            "device_name": lambda: "/dev/xvdb",
        }.get(name)
        if made is None:
            raise CorpusError(f"{self.source}: unknown placeholder [[[[{name}]]]]")
        return made()


def _ceilometer(root: Path, cache: dict[Path, Any], as_found: bool) -> Iterator[Sample]:
    for path in sorted((root / CEILOMETER).glob("*/*.json")):
        rel, folder = path.relative_to(root).as_posix(), path.parent.name
        msg = dict(_load(path, cache))
        if folder == "misc":
            msg = _wire_layout(msg)
            prefix = next((p for p in MISC_EXCHANGES if msg["event_type"].startswith(p)), None)
            if prefix is None:
                raise CorpusError(f"{rel}: no exchange known for {msg['event_type']}")
            exchange = MISC_EXCHANGES[prefix]
        elif folder in FOLDER_EXCHANGES:
            exchange = FOLDER_EXCHANGES[folder]
        else:
            raise CorpusError(f"{rel}: no exchange known for folder {folder}/")
        repairs = () if as_found else _repair_timestamp(msg)
        yield _sample(rel, exchange, "notifications", msg, _payload_instance(msg), "legacy",
                      repairs)


def _yagi(root: Path, cache: dict[Path, Any]) -> Iterator[Sample]:
    for path in sorted((root / YAGI).glob("*/*.json")):
        rel, folder = path.relative_to(root).as_posix(), path.parent.name
        if folder not in FOLDER_EXCHANGES:
            raise CorpusError(f"{rel}: no exchange known for folder {folder}/")
        msg = _load(path, cache)
        yield _sample(rel, FOLDER_EXCHANGES[folder], "notifications", msg,
                      _payload_instance(msg), "legacy")


def _wire_layout(msg: dict[str, Any]) -> dict[str, Any]:
    """Ceilometer's listener view (ctxt, metadata) back to what the sender put on the wire."""
    meta, ctxt = msg.get("metadata") or {}, msg.get("ctxt") or {}
    wire = {"message_id": meta.get("message_id"), "publisher_id": msg.get("publisher_id"),
            "event_type": msg.get("event_type"), "priority": msg.get("priority", "INFO"),
            "payload": msg.get("payload"), "timestamp": meta.get("timestamp")}
    if "_unique_id" in meta:
        wire["_unique_id"] = meta["_unique_id"]
    wire.update({f"_context_{k}": v for k, v in ctxt.items()})
    return wire


def _repair_timestamp(msg: dict[str, Any]) -> tuple[str, ...]:
    stamp = msg.get("timestamp")
    if not isinstance(stamp, str):
        return ()
    try:
        datetime.fromisoformat(stamp)
        return ()
    except ValueError:
        match = _MANGLED_TIME.fullmatch(stamp)
    if match is None:
        return ()
    msg["timestamp"] = "{} {}:{}:{}".format(*match.groups())
    return (f"timestamp {stamp!r} -> {msg['timestamp']!r}",)


def _unique_id(sample: Sample, msg: dict[str, Any], seen: dict[str, str], seed: int) -> Sample:
    """Replace a message id an earlier sample already used (fixtures copied from each other).

    ``_unique_id`` is left as found: notigen's ``.verified`` copies really share it with
    the ``exists`` they verify (StackTach's verifier republishes the original body).
    """
    value = msg.get("message_id")
    if not isinstance(value, str) or value not in seen:
        if isinstance(value, str):
            seen[value] = sample.source
        return sample
    msg["message_id"] = str(uuid.uuid5(_ID_NAMESPACE, f"{seed}:{sample.source}"))
    seen[msg["message_id"]] = sample.source
    note = f"message_id {value!r} also in {seen[value]}: now {msg['message_id']!r}"
    return replace(sample, repairs=(*sample.repairs, note))


def _payload_instance(msg: dict[str, Any]) -> str | None:
    payload = msg.get("payload")
    if not isinstance(payload, dict):
        return None
    value = payload.get("instance_id") or payload.get("instance_uuid")
    return value if isinstance(value, str) else None


def _resolve(node: Any, base: Path, cache: dict[Path, Any], depth: int) -> Any:
    """nova's json_ref: ``{"$ref": "file#", ...overrides}`` -> file content, merged."""
    if isinstance(node, list):
        return [_resolve(v, base, cache, depth) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" not in node:
        return {k: _resolve(v, base, cache, depth) for k, v in node.items()}
    name, _, fragment = str(node["$ref"]).partition("#")
    target = (base / name).resolve()
    if fragment or depth > 32:
        raise CorpusError(f"{target}: unsupported or circular $ref {node['$ref']!r}")
    resolved = _resolve(_load(target, cache), target.parent, cache, depth + 1)
    overrides = _resolve({k: v for k, v in node.items() if k != "$ref"}, base, cache, depth)
    return _merge(resolved, overrides)


def _merge(into: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _load(path: Path, cache: dict[Path, Any]) -> Any:
    if path not in cache:
        try:
            cache[path] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorpusError(f"{path}: {exc}") from exc
    return cache[path]


def _uuid4(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _base_time(rng: random.Random, year: int) -> datetime:
    return datetime(year, 1, 1) + timedelta(seconds=rng.randrange(365 * 86400),
                                            microseconds=rng.randrange(1_000_000))
