"""StackTach's verifier, stream-native: check nova's ``exists`` against what the stream saw.

nova's ``compute.instance.exists`` (and ``instance.exists``) claims what an instance was in an
audit period. :func:`verify` compares each claim with the instance's state: the launch it
names (``launched_at``, same second, among the launches the stream saw), that launch's
flavor (``instance_type_id``, flavor id) and image (``os_architecture``, ``os_distro``,
``os_version``), the tenant, ``deleted_at`` (same second; or no deletion before the period
ended when the exists names none), and the audit period's bounds. Until ``settle`` has
passed since the later of the exists' own time and its period's end, late events may still
arrive, so the result is ``pending``. A field the stream never saw is not held against the
exists (a versioned payload carries no image properties). :func:`missing_exists` flags
periods an instance existed in but got no periodic exists, where nova's audit runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jobs.lifecycle import (
    END,
    FLAVOR,
    IMAGE,
    LAUNCHED,
    STATE,
    InstanceState,
    Observation,
    Rules,
    composites,
    latest,
    when,
)
from jobs.usage import period_of, usage
from stacktide.schema import format_time

SECOND = 1_000_000
IMAGE_FIELDS = ("os_architecture", "os_distro", "os_version")


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A field whose exists value (``actual``) differs from what the stream saw (``expected``)."""

    field: str
    expected: Any
    actual: Any


@dataclass(frozen=True, slots=True)
class AuditResult:
    message_id: str
    cell: str
    instance_id: str
    audit_period_beginning: int | None
    audit_period_ending: int | None
    status: str  # verified | failed | pending
    mismatches: tuple[Mismatch, ...] = ()

    def record(self) -> dict[str, Any]:
        """The ``usage_audit`` row (CONTRACT.md §3); mismatches as a JSON list of objects."""
        t = when
        return {"message_id": self.message_id, "cell": self.cell, "instance_id": self.instance_id,
                "audit_period_beginning": t(self.audit_period_beginning),
                "audit_period_ending": t(self.audit_period_ending), "status": self.status,
                "mismatches": json.dumps([{"field": m.field, "expected": m.expected,
                                           "actual": m.actual} for m in self.mismatches])}


def _time(us: int | None) -> str | None:
    t = when(us)
    return None if t is None else format_time(t)


def _second(us: int | None) -> int | None:
    return None if us is None else us // SECOND


def verify(state: InstanceState | None, exists: Observation, *, now: int, settle: int,
           period: int) -> AuditResult:
    """Verify one exists observation against *state* (None: the stream never saw the instance)."""
    v = exists.values
    begin, end = v.get("audit_period_beginning"), v.get("audit_period_ending")
    result = AuditResult(exists.message_id, exists.cell, exists.instance_id, begin, end, "pending")
    if now < max(exists.at, end or exists.at) + settle:
        return result
    state = state or InstanceState(exists.cell, exists.instance_id)
    found: list[Mismatch] = []

    def check(name: str, expected: Any, actual: Any) -> None:
        if expected is not None and name in claimed and expected != actual:
            found.append(Mismatch(name, expected, actual))

    claimed = set(v)
    launched = v.get("launched_at")
    same = [x for x in state.launches if launched is not None
            and _second(x.launched) == _second(launched)]
    if not same:
        seen = latest(state, exists.at, LAUNCHED) if state.samples else None
        found.append(Mismatch("launched_at", _time(seen), _time(launched)))

    def ref(kind: str, attr: str) -> Any:
        """The launch's value (a legacy and a versioned copy of it may each lack some)."""
        for x in same:
            if (value := getattr(getattr(x, kind), attr, None)) is not None:
                return value
        fallback = latest(state, exists.at, FLAVOR if kind == "flavor" else IMAGE)
        return None if same else getattr(fallback, attr, None)

    flavor, image = composites(v)
    for name in ("instance_type_id", "flavor_id"):
        check(name, ref("flavor", name), getattr(flavor, name, None))
    for name in IMAGE_FIELDS:
        check(name, ref("image", name), getattr(image, name, None))
    check("tenant_id", state.register("tenant_id"), v.get("tenant_id"))
    deleted = v.get("deleted_at")
    if deleted is not None and _second(deleted) != _second(state.deleted_at):
        found.append(Mismatch("deleted_at", _time(state.deleted_at), _time(deleted)))
    elif deleted is None and state.deleted_at is not None and state.deleted_at <= (end or exists.at):
        found.append(Mismatch("deleted_at", _time(state.deleted_at), None))
    if begin is None or end is None or begin >= end:
        found.append(Mismatch("audit_period_ending" if begin else "audit_period_beginning",
                              "an audit period", _time(end if begin else begin)))
    else:
        if begin != period_of(end - 1, period):
            found.append(Mismatch("audit_period_beginning", _time(period_of(end - 1, period)),
                                  _time(begin)))
        if end > exists.at + SECOND:
            found.append(Mismatch("audit_period_ending", f"<= {_time(exists.at)}", _time(end)))
    status = "failed" if found else "verified"
    return AuditResult(result.message_id, result.cell, result.instance_id, begin, end, status,
                       tuple(found))


def periodic(exists: Observation, period: int) -> int | None:
    """The period start if *exists* is nova's periodic audit of a whole period, else None."""
    begin, end = (exists.values.get(k) for k in ("audit_period_beginning", "audit_period_ending"))
    if isinstance(begin, int) and end == begin + period and begin % period == 0:
        return begin
    return None


def expected_exists(state: InstanceState, rules: Rules, period_start: int, period: int) -> bool:
    """Whether nova's audit of this period should send an exists for the instance.

    It does for an instance launched before the period ended, not deleted before it began,
    and on a compute host at the period's end, or when it was deleted (so never for one
    shelved_offloaded then, or deleted from there: such an instance has no host).
    """
    end = period_start + period
    last = min(end, END if state.deleted_at is None else state.deleted_at) - 1
    launched = latest(state, last, LAUNCHED)
    if launched is None or launched >= end or not usage(state, rules, period, period_start, end):
        return False
    return rules.meaning(latest(state, last, STATE)).audited


def missing_exists(state: InstanceState, rules: Rules, seen: Iterable[int], start: int, stop: int,
                   period: int) -> list[int]:
    """Period starts in [start, stop) that expected a periodic exists and got none in *seen*."""
    have = set(seen)
    stop = min(stop, END)
    return [ps for ps in range(period_of(start, period), stop, period)
            if ps + period <= stop and ps not in have
            and expected_exists(state, rules, ps, period)]
