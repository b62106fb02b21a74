"""Ground truth: what each instance really used, from the model's own rows, not from events.

Computed independently of jobs/usage.py on purpose: the simulator knows when it changed
each row, so the existence and running intervals and the per-period sums here are what a
correct stream job must reproduce exactly (integer microseconds). The conventions match
``conf/lifecycle.yaml``: existence from the first launched_at to deleted_at (terminated_at),
not while shelved_offloaded; running while active, rescued or resized. Payload times are
what the stream can see: versioned payloads carry whole seconds (oslo's isotime), so with
versioned notifications the launch and delete times are the whole-second ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stacktide.schema import format_time
from stacktide.simulate.model import NOT_EXISTING, RUNNING, SECOND, FlavorSpec, Life

Interval = tuple[int, int, str]  # start, end, flavor id
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class InstanceTruth:
    cell: str
    instance_id: str
    tenant_id: str
    launched_at: int | None
    deleted_at: int | None
    existence: list[Interval] = field(default_factory=list)
    running: list[Interval] = field(default_factory=list)
    flavors: dict[str, FlavorSpec] = field(default_factory=dict)

    def usage(self, period: int) -> dict[tuple[int, str], list[int]]:
        """(period_start, flavor_id) -> [existence µs, running µs]."""
        out: dict[tuple[int, str], list[int]] = {}
        for index, intervals in enumerate((self.existence, self.running)):
            for start, end, flavor in intervals:
                t = start
                while t < end:
                    ps = t - t % period
                    stop = min(end, ps + period)
                    out.setdefault((ps, flavor), [0, 0])[index] += stop - t
                    t = stop
        return out


def truth(life: Life, end: int, whole_seconds: bool) -> InstanceTruth:
    """The intervals of one instance up to *end* (the end of the simulated span)."""
    def seen(t: int | None) -> int | None:
        return None if t is None else (t - t % SECOND if whole_seconds else t)

    launches = [s.launched_at for _, s in life.changes if s.launched_at is not None]
    deletes = [s.terminated_at for _, s in life.changes if s.terminated_at is not None]
    first, deleted = seen(min(launches, default=None)), seen(min(deletes, default=None))
    result = InstanceTruth(life.id.cell, life.id.instance_id, life.id.tenant_id, first, deleted)
    if first is None:
        return result
    hi = end if deleted is None else min(deleted, end)
    for i, (t, snap) in enumerate(life.changes):
        nxt = life.changes[i + 1][0] if i + 1 < len(life.changes) else end
        a, b = max(t, first), min(nxt, hi)
        if a >= b or snap.vm_state in NOT_EXISTING:
            continue
        flavor = snap.flavor.flavorid
        result.flavors[flavor] = snap.flavor
        _extend(result.existence, a, b, flavor)
        if snap.vm_state in RUNNING:
            _extend(result.running, a, b, flavor)
    return result


def _extend(intervals: list[Interval], a: int, b: int, flavor: str) -> None:
    if intervals and intervals[-1][1] == a and intervals[-1][2] == flavor:
        intervals[-1] = (intervals[-1][0], b, flavor)
    else:
        intervals.append((a, b, flavor))


def seconds(us: int) -> str:
    """Exact decimal seconds: 3600000001 -> '3600.000001'."""
    return f"{'-' if us < 0 else ''}{abs(us) // SECOND}.{abs(us) % SECOND:06d}"


def to_json(t: InstanceTruth, period: int, exists: list[dict[str, Any]]) -> dict[str, Any]:
    def when(us: int | None) -> str | None:
        return None if us is None else format_time(_EPOCH + timedelta(microseconds=us))

    usage = []
    for (ps, flavor), (us, run) in sorted(t.usage(period).items()):
        spec = t.flavors[flavor]
        usage.append({"period_start": when(ps), "period_end": when(ps + period),
                      "flavor_id": flavor, "seconds": seconds(us), "running_seconds": seconds(run),
                      "vcpus": spec.vcpus, "memory_mb": spec.memory_mb,
                      "disk_gb": spec.root_gb + spec.ephemeral_gb})
    return {
        "cell": t.cell, "instance_id": t.instance_id, "tenant_id": t.tenant_id,
        "launched_at": when(t.launched_at), "deleted_at": when(t.deleted_at),
        "existence": [{"flavor_id": f, "start": when(a), "end": when(b)} for a, b, f in t.existence],
        "running": [{"flavor_id": f, "start": when(a), "end": when(b)} for a, b, f in t.running],
        "usage": usage, "exists": exists,
    }

