"""Request timelines and correlated errors, folded from notifications in any order.

A request is every notification that carries its id: nova-api, conductor, scheduler and
compute share a ``request_id``; another service (neutron, cinder, glance) called on its
behalf gets a request id of its own but carries the caller's as ``global_request_id``.
:func:`group_key` is therefore ``global_request_id`` when there is one, else
``request_id``: one key for the whole story, across services and cells.

A :class:`Timeline` keeps the request's events as a set ordered by ``(at, message_id)``
(a redelivery, same id, changes nothing), and every row is a function of that set alone
(:func:`request_row`, :func:`error_rows`): the arrival order cannot change the result,
and an error that arrived before the rest of its request is correlated again once the
rest arrives. ``.start``/``.end``/``.error`` events of one operation of one instance pair
into timed operations, as StackTach's timings did. What is an error and how operations
pair is data (``conf/requests.yaml``), checked by :func:`load_rules`.
"""

from __future__ import annotations

import fnmatch
import json
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from stacktide.config import REPO_ROOT, _Reader
from stacktide.errors import ConfigError
from stacktide.schema import Envelope, format_time, time_us

DEFAULT_RULES = REPO_ROOT / "conf" / "requests.yaml"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Rules:
    timeout_us: int
    preceding_max: int
    python_bundle_ms: int
    error_priorities: frozenset[str]
    error_event_types: tuple[str, ...]
    starts: tuple[str, ...]
    ends: tuple[str, ...]
    errors: tuple[str, ...]
    legacy_exceptions: Mapping[str, str]

    def is_error(self, event_type: str, priority: str) -> bool:
        return priority.lower() in self.error_priorities or any(
            fnmatch.fnmatchcase(event_type, p) for p in self.error_event_types)

    def phase(self, event_type: str) -> tuple[str, str] | None:
        """``(operation, start|end|error)`` of a paired event type, None for any other."""
        for kind, suffixes in (("start", self.starts), ("end", self.ends),
                               ("error", self.errors)):
            for suffix in suffixes:
                if event_type.endswith(suffix) and len(event_type) > len(suffix):
                    return event_type[: -len(suffix)], kind
        return None


def load_rules(path: str | Path | None = None) -> Rules:
    """Read and check conf/requests.yaml (or *path*); a bad entry raises ConfigError."""
    file = str(path or DEFAULT_RULES)
    try:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(file, "(file)", "a readable YAML file", str(exc).splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise ConfigError(file, "(top level)", "a mapping", data)
    r = _Reader(file, data, "")
    r.unknown({"inactivity_timeout_s", "preceding_max", "python_bundle_ms", "error_priorities",
               "error_event_types", "operation_start", "operation_end", "operation_error",
               "legacy_exceptions"})
    legacy = r.section("legacy_exceptions").data
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in legacy.items()):
        raise r.fail("legacy_exceptions", "a mapping of message patterns to class names", legacy)
    return Rules(
        timeout_us=int(r.positive("inactivity_timeout_s", float, 900.0) * 1e6),
        preceding_max=r.positive("preceding_max", int, 50, zero_ok=True),
        python_bundle_ms=r.positive("python_bundle_ms", int, 1000),
        error_priorities=frozenset(r.names("error_priorities", ("error", "critical"))),
        error_event_types=r.names("error_event_types", ("*.error",)),
        starts=r.names("operation_start", (".start",)),
        ends=r.names("operation_end", (".end",)),
        errors=r.names("operation_error", (".error",)),
        legacy_exceptions=dict(legacy),
    )


def rules_document(rules: Rules) -> dict[str, Any]:
    """*rules* as the JSON the JVM's request job reads (jvm/operators, ``stacktide.requests``):
    checked here on load, read there as they are; the legacy patterns as pairs, in order."""
    return {"timeout_us": rules.timeout_us, "preceding_max": rules.preceding_max,
            "error_priorities": sorted(rules.error_priorities),
            "error_event_types": list(rules.error_event_types), "starts": list(rules.starts),
            "ends": list(rules.ends), "errors": list(rules.errors),
            "legacy_exceptions": [[k, v] for k, v in rules.legacy_exceptions.items()]}


@dataclass(frozen=True, slots=True)
class Fault:
    """What went wrong, as the notification tells it."""

    exception: str | None
    message: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class Event:
    """The part of a notification a timeline needs (kept in Flink state: no payload)."""

    message_id: str
    at: int  # µs since the epoch, the notification's own time
    cell: str
    event_type: str
    priority: str
    service: str | None
    host: str | None
    request_id: str | None
    global_request_id: str | None
    instance_id: str | None
    tenant_id: str | None
    fault: Fault | None = None  # set on errors only

    @property
    def order(self) -> tuple[int, str]:
        return self.at, self.message_id


def group_key(global_request_id: str | None, request_id: str | None) -> str | None:
    """The request a notification belongs to: the cross-service id when it has one."""
    return global_request_id or request_id or None



def observe(env: Envelope, rules: Rules) -> Event:
    """*env* as a timeline event; its fault extracted when it is an error."""
    fault = fault_of(env.payload, rules) if rules.is_error(env.event_type, env.priority) else None
    return Event(env.message_id, time_us(env.generated), env.cell, env.event_type,
                 env.priority.lower(), env.service, env.host, env.request_id,
                 env.global_request_id, env.instance_id, env.tenant_id, fault)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def fault_of(payload: Any, rules: Rules) -> Fault:
    """Exception, message and code of an error payload, whichever form nova used.

    Versioned: an ExceptionPayload (``exception``, ``exception_message``) as the payload
    itself (compute.exception), or under ``fault`` (instance.*.error) or ``reason``
    (compute_task.*, libvirt). Legacy: ``exception`` is the class name, or the exception's
    ``kwargs`` only; the message is ``message`` or a kwarg (``reason``, ``value``); the code
    ``code`` or ``exception.kwargs.code``.
    """
    if not isinstance(payload, dict):
        return Fault(None, _text(payload), None)
    data = payload.get("nova_object.data", payload)
    data = data if isinstance(data, dict) else {}
    for obj in (data, *(data.get(k) for k in ("fault", "reason", "exception"))):
        inner = obj.get("nova_object.data", obj) if isinstance(obj, dict) else None
        if isinstance(inner, dict) and isinstance(inner.get("exception"), str) \
                and "exception_message" in inner:
            return Fault(inner["exception"], _text(inner.get("exception_message")),
                         _text(data.get("code")))
    exc, reason = data.get("exception"), data.get("reason")
    kwargs: dict[str, Any] = {}
    for holder in (exc, reason):
        if isinstance(holder, dict) and isinstance(holder.get("kwargs"), dict):
            kwargs = {**holder["kwargs"], **kwargs}
    message = _text(data.get("message")) or _text(kwargs.get("reason")) or \
        _text(kwargs.get("value")) or (reason if isinstance(reason, str) else None) or \
        _text(data.get("exception_message"))
    name = exc if isinstance(exc, str) and exc else _text(kwargs.get("exc_type"))
    if name is None and message is not None:
        name = next((cls for pattern, cls in rules.legacy_exceptions.items()
                     if fnmatch.fnmatchcase(message, pattern)), None)
    return Fault(name, message, _text(data.get("code", kwargs.get("code"))))


@dataclass(frozen=True, slots=True)
class Operation:
    operation: str
    instance_id: str | None
    start: int | None
    end: int | None
    outcome: str  # ok, error, open (no end yet), unfinished (request closed without an end)
    cell: str = ""
    host: str | None = None  # where it ended (or started, when it has not ended)

    def record(self) -> dict[str, Any]:
        return {"operation": self.operation, "instance_id": self.instance_id,
                "cell": self.cell, "host": self.host,
                "start": _iso(self.start), "end": _iso(self.end),
                "duration_s": None if self.start is None or self.end is None
                else (self.end - self.start) / 1e6, "outcome": self.outcome}


def _iso(us: int | None) -> str | None:
    return None if us is None else format_time(_EPOCH + timedelta(microseconds=us))


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(slots=True)
class Timeline:
    """One request's events, a set ordered by ``(at, message_id)``."""

    key: str
    events: list[Event] = field(default_factory=list)

    def add(self, event: Event) -> bool:
        """Insert *event*; False when it is already there (a redelivery)."""
        i = bisect_left(self.events, event.order, key=lambda e: e.order)
        if i < len(self.events) and self.events[i].message_id == event.message_id:
            return False
        if any(e.message_id == event.message_id for e in self.events):
            return False  # same id, another time: the first one seen stands
        insort(self.events, event, key=lambda e: e.order)
        return True

    @property
    def last_at(self) -> int:
        return self.events[-1].at

    def errors(self) -> list[Event]:
        return [e for e in self.events if e.fault is not None]


def operations(events: Iterable[Event], rules: Rules, closed: bool) -> list[Operation]:
    """Pair each operation's start with its end or error, per instance, in time order."""
    open_: dict[tuple[str, str | None], Event] = {}
    done: list[Operation] = []
    for e in events:
        phase = rules.phase(e.event_type)
        if phase is None:
            continue
        name, kind = phase
        slot = (name, e.instance_id)
        if kind == "start":
            open_[slot] = e  # a second start restarts the operation
            continue
        outcome = "error" if kind == "error" or e.fault is not None else "ok"
        start = open_.pop(slot, None)
        done.append(Operation(name, e.instance_id, None if start is None else start.at, e.at,
                              outcome, e.cell, e.host or (start.host if start else None)))
    left = "unfinished" if closed else "open"
    done.extend(Operation(n, i, e.at, None, left, e.cell, e.host)
                for (n, i), e in open_.items())
    return sorted(done, key=lambda o: (o.start if o.start is not None else o.end or 0,
                                       o.operation, o.instance_id or ""))


def outcome(ops: list[Operation], has_error: bool, closed: bool) -> str:
    """error once any error is known; open while an operation runs or the request may still
    grow; ok once every operation ended well, or the request closed without an error."""
    if has_error:
        return "error"
    if closed:
        return "ok"
    return "ok" if ops and all(o.end is not None for o in ops) else "open"


def _names(values: Iterable[str | None]) -> str:
    return json.dumps(sorted({v for v in values if v}))


def request_row(timeline: Timeline, rules: Rules, closed: bool) -> dict[str, Any] | None:
    """The ``requests`` row of *timeline* (without revision); None when none of its events
    carries a request id (an error on its own, keyed by its message id)."""
    events = timeline.events
    if not events or not any(e.request_id or e.global_request_id for e in events):
        return None
    ops = operations(events, rules, closed)
    errors = timeline.errors()
    first, last = events[0].at, events[-1].at
    return {
        "request_id": timeline.key,
        "global_request_id": next((e.global_request_id for e in events if e.global_request_id),
                                  None),
        "first_at": _time(first), "last_at": _time(last), "duration_s": (last - first) / 1e6,
        "cells": _names(e.cell for e in events), "services": _names(e.service for e in events),
        "hosts": _names(e.host for e in events),
        "instance_ids": _names(e.instance_id for e in events),
        "tenant_id": next((e.tenant_id for e in events if e.tenant_id), None),
        "event_count": len(events), "error_count": len(errors),
        "outcome": outcome(ops, bool(errors), closed),
        "operations": json.dumps([o.record() for o in ops]),
        "root_cause_message_id": errors[0].message_id if errors else None,
    }


def error_row(timeline: Timeline, error: Event, rules: Rules) -> dict[str, Any]:
    """The ``errors`` row of *error* (without revision), correlated with its request so far."""
    assert error.fault is not None
    events = timeline.events
    i = bisect_left(events, error.order, key=lambda e: e.order)
    before = events[max(0, i - rules.preceding_max):i] if rules.preceding_max else []
    errors = timeline.errors()
    keyed = any(e.request_id or e.global_request_id for e in events)
    return {
        "message_id": error.message_id, "at": _time(error.at), "cell": error.cell,
        "event_type": error.event_type, "priority": error.priority, "service": error.service,
        "host": error.host, "request_id": timeline.key if keyed else None,
        "instance_id": error.instance_id or next(
            (e.instance_id for e in events if e.instance_id), None),
        "tenant_id": error.tenant_id or next((e.tenant_id for e in events if e.tenant_id), None),
        "exception": error.fault.exception, "message": error.fault.message,
        "code": error.fault.code,
        "root_cause_message_id": errors[0].message_id if errors else error.message_id,
        "preceding": json.dumps([{"event_type": e.event_type, "at": _iso(e.at), "host": e.host,
                                  "message_id": e.message_id} for e in before]),
    }


def error_rows(timeline: Timeline, rules: Rules) -> list[dict[str, Any]]:
    return [error_row(timeline, e, rules) for e in timeline.errors()]


def alert(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object published on ``<prefix>.alerts`` for an errors row."""
    return {k: (format_time(v) if isinstance(v, datetime) else
                json.loads(v) if k == "preceding" else v) for k, v in row.items()}
