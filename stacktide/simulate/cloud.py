"""A seeded cloud: many instances in several cells and tenants, plus nova's periodic usage audit.

Operations are drawn per instance from what its vm_state allows, at exponential gaps.
Nova's audit (``instance_usage_audit``) runs on every compute host a little after each
period boundary and sends ``compute.instance.exists`` for each instance on that host that
was launched before the period ended and not terminated before it began
(``get_active_by_window_joined``), with the row as it is when the audit runs. Operations
never start within :data:`QUIET` of a boundary, so no audit races an operation (nova's
audit reads launched_at at run time; a rebuild in between would drop that exists).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from stacktide.simulate.model import (
    FLAVORS,
    IMAGES,
    MINUTE,
    SECOND,
    Emission,
    Identity,
    Life,
    Snap,
    new_uuid,
    snap_at,
)

HOUR = 60 * MINUTE
PERIODS = {"hour": HOUR, "day": 24 * HOUR}
QUIET = 5 * MINUTE


@dataclass(frozen=True, slots=True)
class Params:
    seed: int = 0
    instances: int = 200
    start: int = 1_704_067_200 * SECOND  # 2024-01-01T00:00:00Z
    hours: int = 72
    cells: tuple[str, ...] = ("cell1", "cell2", "cell3")
    tenants: int = 12
    hosts_per_cell: int = 4
    period: str = "hour"  # nova's instance_usage_audit_period
    audit: bool = True
    create_errors: float = 0.04
    build_deletes: float = 0.03
    mean_gap_hours: float = 6.0

    @property
    def period_us(self) -> int:
        return PERIODS[self.period]

    @property
    def end(self) -> int:
        return self.start + self.hours * HOUR


@dataclass(slots=True)
class Cloud:
    params: Params
    lives: list[Life]


def quiet(t: int, period: int) -> int:
    """*t*, moved out of the quiet minutes around a period boundary."""
    into = t % period
    if into < QUIET:
        return t - into + QUIET
    if period - into < QUIET:
        return t - into + period + QUIET
    return t


def simulate(p: Params) -> Cloud:
    """Every instance's life and, when *p.audit*, the periodic exists of every period."""
    if p.start % p.period_us:
        raise ValueError("start must be on a period boundary")
    rng = random.Random(p.seed)
    tenants = [(new_uuid(rng).replace("-", ""), new_uuid(rng).replace("-", ""))
               for _ in range(p.tenants)]
    hosts = {c: [f"{c}-compute-{i:02d}" for i in range(1, p.hosts_per_cell + 1)] for c in p.cells}
    lives = []
    for n in range(p.instances):
        life_rng = random.Random(f"{p.seed}:{n}")
        cell = life_rng.choice(p.cells)
        tenant, user = life_rng.choice(tenants)
        start = quiet(p.start + int(life_rng.random() * 0.7 * (p.end - p.start)), p.period_us)
        ident = Identity(new_uuid(life_rng), cell, tenant, user, f"server-{n:04d}", start,
                         f"{cell}-api-01")
        snap = Snap("building", None, "pending", life_rng.choice(FLAVORS), life_rng.choice(IMAGES),
                    life_rng.choice(hosts[cell]))
        life = Life(life_rng, ident, snap, hosts[cell], p.period_us)
        _live(life, p)
        lives.append(life)
    if p.audit:
        _audit(lives, p)
    return Cloud(p, lives)


def _live(life: Life, p: Params) -> None:
    rng = life.rng
    roll = rng.random()
    outcome = "error" if roll < p.create_errors else (
        "deleted" if roll < p.create_errors + p.build_deletes else "ok")
    life.create(outcome)
    if outcome == "deleted":
        return
    while True:
        state = life.snap.vm_state
        mean = {"resized": 0.3, "rescued": 1.0}.get(state, p.mean_gap_hours) * HOUR
        t = quiet(life.t + int(rng.expovariate(1 / mean)) + MINUTE, p.period_us)
        if t > p.end - 10 * MINUTE:
            return
        life.t = t
        if _step(life, state) == "deleted":
            return


def _step(life: Life, state: str) -> str:
    rng, snap = life.rng, life.snap
    choices = {
        "active": ["power_off", "suspend", "pause", "shelve", "resize", "migrate", "rebuild",
                   "rescue", "delete", "power_off", "resize"],
        "stopped": ["power_on", "power_on", "shelve", "delete"],
        "suspended": ["resume", "resume", "delete"],
        "paused": ["unpause", "unpause", "delete"],
        "shelved": ["unshelve", "shelve_offload", "shelve_offload", "delete"],
        "shelved_offloaded": ["unshelve", "unshelve", "delete"],
        "resized": ["confirm", "confirm", "revert"],
        "rescued": ["unrescue", "unrescue", "delete"],
        "error": ["delete"],
    }[state]
    op = rng.choice(choices)
    simple = {
        "power_off": ("powering-off", "stopped", "shutdown"),
        "power_on": ("powering-on", "active", "running"),
        "suspend": ("suspending", "suspended", "suspended"),
        "resume": ("resuming", "active", "running"),
        "pause": ("pausing", "paused", "paused"),
        "unpause": ("unpausing", "active", "running"),
        "unrescue": ("unrescuing", "active", "running"),
    }
    if op in simple:
        life.action(op, *simple[op])
    elif op == "shelve":
        life.action("shelve", "shelving", "shelved", "shutdown", exists=True)
    elif op == "rescue":
        life.action("rescue", "rescuing", "rescued", "running", launch=True, exists=True)
    elif op == "shelve_offload":
        life.shelve_offload()
    elif op == "unshelve":
        life.unshelve()
    elif op in ("resize", "migrate"):
        life.resize(rng.choice([f for f in FLAVORS if f != snap.flavor]) if op == "resize"
                    else snap.flavor)
    elif op == "confirm":
        life.confirm()
    elif op == "revert":
        life.revert()
    elif op == "rebuild":
        life.rebuild(rng.choice(IMAGES))
    else:
        life.delete()
        return "deleted"
    return op


def _audit(lives: list[Life], p: Params) -> None:
    """nova's periodic task: per host, one exists per instance active in the last period."""
    rng = random.Random(f"{p.seed}:audit")
    end = p.start + p.period_us
    while end <= p.end:
        delays: dict[str, int] = {}
        for life in lives:
            host_of_audit = snap_at(life.changes, end)
            if host_of_audit is None or host_of_audit.host is None:
                continue
            at = end + delays.setdefault(host_of_audit.host, rng.randrange(30, 240) * SECOND)
            at += rng.randrange(1, 2 * SECOND)
            snap = snap_at(life.changes, at)
            if snap is None or snap.host is None or snap.launched_at is None:
                continue
            if snap.launched_at >= end or (snap.terminated_at is not None and
                                           snap.terminated_at <= end - p.period_us):
                continue
            life.out.append(Emission(at, "exists", snap, None, "compute", snap.host, "INFO",
                                     f"req-{new_uuid(rng)}",
                                     {"audit_period_beginning": end - p.period_us,
                                      "audit_period_ending": end}))
        end += p.period_us
