"""A nova instance's life as nova would live it: its rows over time and what it announces.

:class:`Life` walks one instance through operations (create, power off/on, suspend,
pause, shelve/offload/unshelve, resize with confirm or revert, cold migrate, rebuild,
rescue, delete) the way nova's compute manager does: every save that changes vm_state or
task_state announces a ``compute.instance.update`` with the old and new states, each action
is wrapped in ``.start``/``.end`` notifications, ``launched_at`` is set when a spawn
completes (create, rebuild, rescue, unshelve, finish_resize, revert), ``terminated_at``
when a delete completes, and ``exists`` is sent for the current period at rebuild, rescue,
resize, revert and shelve. Each announcement is an :class:`Emission` carrying the row as
it was at that instant (:class:`Snap`); rendering to wire formats is stacktide.simulate.nova.
All times are integer microseconds since the epoch; randomness comes from one seeded RNG.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

SECOND = 1_000_000
MINUTE = 60 * SECOND


@dataclass(frozen=True, slots=True)
class FlavorSpec:
    type_id: int  # nova's instance_types.id (legacy instance_type_id)
    flavorid: str
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int = 0


@dataclass(frozen=True, slots=True)
class ImageSpec:
    uuid: str
    name: str
    os_type: str
    architecture: str
    os_distro: str
    os_version: str


FLAVORS = (
    FlavorSpec(1, "1", "m1.tiny", 1, 512, 1),
    FlavorSpec(2, "2", "m1.small", 1, 2048, 20),
    FlavorSpec(3, "3", "m1.medium", 2, 4096, 40),
    FlavorSpec(4, "4", "m1.large", 4, 8192, 80),
    FlavorSpec(5, "5", "m1.xlarge", 8, 16384, 160),
    FlavorSpec(10, "performance1-2", "2 GB Performance", 2, 2048, 40, 20),
    FlavorSpec(11, "performance1-4", "4 GB Performance", 4, 4096, 40, 40),
)
IMAGES = (
    ImageSpec("5b1d6e64-7a2c-4c53-9e1e-1f0a4b2f6a01", "ubuntu-22.04", "linux", "x64", "org.ubuntu",
              "22.04"),
    ImageSpec("9f3e2a10-0c4b-4d1e-8a55-6b7c8d9e0f02", "centos-9", "linux", "x64", "org.centos", "9"),
    ImageSpec("2c7a9b33-5e6f-4a1b-9c0d-1e2f3a4b5c03", "debian-12", "linux", "x64", "org.debian",
              "12"),
    ImageSpec("7d8e9f04-1a2b-4c3d-8e4f-5a6b7c8d9e04", "windows-2022", "windows", "x64",
              "com.microsoft.server", "2022"),
)
RUNNING = frozenset({"active", "rescued", "resized"})  # the model's own notion, see truth.py
NOT_EXISTING = frozenset({"shelved_offloaded", "deleted"})


@dataclass(frozen=True, slots=True)
class Snap:
    """The instance's nova row at one instant (what info_from_instance reads)."""

    vm_state: str
    task_state: str | None
    power_state: str
    flavor: FlavorSpec
    image: ImageSpec
    host: str | None
    launched_at: int | None = None
    terminated_at: int | None = None


@dataclass(frozen=True, slots=True)
class Emission:
    """One announcement: event suffix (``update``, ``create.start``, ``exists`` …) and row."""

    at: int
    event: str
    snap: Snap
    old: Snap | None = None  # for updates: the row before the save
    service: str = "compute"  # compute | api
    host: str = ""
    priority: str = "INFO"
    request_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Identity:
    instance_id: str
    cell: str
    tenant_id: str
    user_id: str
    display_name: str
    created_at: int
    api_host: str


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class Life:
    """One instance: its identity, its rows over time (``changes``) and its emissions."""

    def __init__(self, rng: random.Random, ident: Identity, snap: Snap, hosts: list[str],
                 period: int) -> None:
        self.rng, self.id, self.snap, self.hosts, self.period = rng, ident, snap, hosts, period
        self.t = ident.created_at
        self.changes: list[tuple[int, Snap]] = []
        self.out: list[Emission] = []
        self.request = ""
        self.before_resize: tuple[FlavorSpec, str | None] | None = None

    # -- primitives --------------------------------------------------------------------------
    def tick(self, lo_ms: int = 5, hi_ms: int = 1500) -> int:
        self.t += self.rng.randrange(lo_ms * 1000, hi_ms * 1000) + 1
        return self.t

    def emit(self, event: str, service: str = "compute", priority: str = "INFO",
             **extra: Any) -> None:
        self.tick()
        host = self.id.api_host if service == "api" else (self.snap.host or self.id.api_host)
        self.out.append(Emission(self.t, event, self.snap, None, service, host, priority,
                                 self.request, extra))

    def update(self, service: str = "compute", **changes: Any) -> None:
        """Save the row; nova announces it (old_state/state, old_task_state/new_task_state)."""
        self.tick()
        old, self.snap = self.snap, replace(self.snap, **changes)
        self.changes.append((self.t, self.snap))
        host = self.id.api_host if service == "api" else (self.snap.host or self.id.api_host)
        self.out.append(Emission(self.t, "update", self.snap, old, service, host, "INFO",
                                 self.request))

    def begin(self) -> None:
        self.request = f"req-{new_uuid(self.rng)}"

    def exists_now(self) -> None:
        """notify_usage_exists(current_period=True): from the period's start to now."""
        self.tick()
        end = self.t - self.rng.randrange(50, 5000)
        self.emit("exists", audit_period_beginning=end - end % self.period, audit_period_ending=end)

    def launch(self, state: str = "active", **changes: Any) -> None:
        """A spawn completed: launched_at is now, then the row is saved in its new state."""
        self.tick(200, 20_000)
        self.update(vm_state=state, task_state=None, power_state="running", launched_at=self.t,
                    **changes)

    # -- operations ----------------------------------------------------------------------------
    def create(self, outcome: str = "ok") -> None:
        self.begin()
        self.changes.append((self.t, self.snap))
        self.update("api", task_state="scheduling")
        self.update(task_state=None)
        self.emit("create.start")
        for task in ("networking", "block_device_mapping", "spawning"):
            self.update(task_state=task)
        if outcome == "error":
            self.tick(1000, 30_000)
            self.emit("create.error", priority="ERROR", message="Build of instance aborted",
                      exception="BuildAbortException")
            self.update(vm_state="error", task_state=None, power_state="nostate")
        elif outcome == "deleted":
            self.delete(api_task=True)
        else:
            self.launch()
            self.emit("create.end", message="Success")

    def action(self, name: str, task: str, state: str, power: str, launch: bool = False,
               exists: bool = False) -> None:
        """The common shape: API sets the task, compute runs ``name``.start/.end."""
        self.begin()
        self.update("api", task_state=task)
        if exists:
            self.exists_now()
        self.emit(f"{name}.start")
        if launch:
            self.launch(state)
        else:
            self.tick(100, 8000)
            self.update(vm_state=state, task_state=None, power_state=power)
        self.emit(f"{name}.end")

    def shelve_offload(self) -> None:
        self.begin()
        self.emit("shelve_offload.start")
        self.update(task_state="shelving_offloading")
        self.update(vm_state="shelved_offloaded", task_state=None, host=None)
        self.emit("shelve_offload.end")

    def unshelve(self) -> None:
        self.begin()
        self.update("api", task_state="unshelving")
        self.snap = replace(self.snap, host=self.rng.choice(self.hosts))
        self.emit("unshelve.start")
        self.update(task_state="spawning")
        self.launch()
        self.emit("unshelve.end")

    def resize(self, flavor: FlavorSpec) -> None:
        """Resize (or cold migrate, same flavor) up to VERIFY_RESIZE on another host."""
        self.begin()
        self.before_resize = (self.snap.flavor, self.snap.host)
        self.update("api", task_state="resize_prep")
        self.exists_now()
        self.emit("resize.prep.start", new_flavor=flavor)
        self.emit("resize.prep.end", new_flavor=flavor, new_instance_type=flavor.name,
                  new_instance_type_id=flavor.type_id)
        self.update(task_state="resize_migrating")
        self.emit("resize.start")
        self.tick(1000, 30_000)
        self.update(task_state="resize_migrated")
        self.emit("resize.end")
        dest = self.rng.choice([h for h in self.hosts if h != self.snap.host] or self.hosts)
        self.update(task_state="resize_finish", flavor=flavor, host=dest)
        self.emit("finish_resize.start")
        self.launch("resized")
        self.emit("finish_resize.end")

    def confirm(self) -> None:
        self.begin()
        self.emit("resize.confirm.start")
        self.update(vm_state="active", task_state=None)
        self.emit("resize.confirm.end")

    def revert(self) -> None:
        assert self.before_resize is not None, "revert without a resize"
        flavor, host = self.before_resize
        self.begin()
        self.update("api", task_state="resize_reverting")
        self.exists_now()
        self.emit("resize.revert.start")
        self.update(flavor=flavor, host=host)  # finish_revert_resize restores the old flavor
        self.launch()
        self.emit("resize.revert.end")

    def rebuild(self, image: ImageSpec) -> None:
        self.begin()
        self.update("api", task_state="rebuilding")
        self.exists_now()  # nova sends it with the original image
        self.snap = replace(self.snap, image=image)
        self.emit("rebuild.start")
        for task in ("rebuild_block_device_mapping", "rebuild_spawning"):
            self.update(task_state=task)
        self.launch()
        self.emit("rebuild.end")

    def delete(self, api_task: bool = False) -> None:
        if not api_task:
            self.begin()
        self.update("api", task_state="deleting")
        service = "api" if self.snap.host is None else "compute"
        self.emit("delete.start", service)
        if service == "compute":
            self.emit("shutdown.start")
            self.emit("shutdown.end")
        self.tick(100, 3000)
        self.update(service, vm_state="deleted", task_state=None, power_state="nostate",
                    terminated_at=self.t - self.rng.randrange(1, 200_000))
        self.emit("delete.end", service)


def snap_at(changes: list[tuple[int, Snap]], at: int) -> Snap | None:
    """The row as it was at *at* (the newest change at or before it)."""
    found = None
    for t, snap in changes:
        if t > at:
            break
        found = snap
    return found
