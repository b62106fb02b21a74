"""One call from parameters to what ``stacktide simulate`` writes: messages and ground truth.

:func:`generate` simulates the cloud, renders every emission (legacy, versioned or both),
optionally corrupts some periodic exists (each corruption is recorded in the truth with the
field an auditor must report), and orders the messages as :mod:`.delivery` says. The truth
lists, per instance, its intervals, its exact usage per period and flavor, and its exists.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stacktide.schema import format_time
from stacktide.simulate import failures as fail
from stacktide.simulate.cloud import Cloud, Params, simulate
from stacktide.simulate.delivery import Delivery, deliver
from stacktide.simulate.model import SECOND
from stacktide.simulate.nova import Rendered, Renderer, iso_time, old_time
from stacktide.simulate.truth import to_json, truth

CORRUPTIBLE = ("launched_at", "tenant_id", "instance_type_id", "flavor_id", "os_distro",
               "os_version", "os_architecture", "deleted_at", "audit_period_beginning")


_VERSIONED_FIELD = {"instance_type_id": "flavor_id", "os_distro": "os_architecture",
                    "os_version": "os_architecture"}


@dataclass(slots=True)
class Traffic:
    cloud: Cloud
    messages: list[tuple[int, Rendered | fail.Message]]  # (delivery time, message), in order
    truth: dict[str, Any] = field(default_factory=dict)


def generate(params: Params, fmt: str = "legacy", delivery: Delivery | None = None,
             corrupt: int = 0, failures: int = 0) -> Traffic:
    """*failures*: failing requests of each kind of :mod:`.failures` added to the traffic."""
    cloud = simulate(params)
    renderer = Renderer(params.seed, fmt)
    rendered: list[Rendered] = []
    for life in cloud.lives:
        for emission in life.out:
            rendered.extend(renderer.render(life.id, emission))
    rendered.sort(key=lambda r: (r.at, r.instance_id, r.fmt))
    corrupted = _corrupt(rendered, corrupt, params)
    exists: dict[str, list[dict[str, Any]]] = {}
    for r in rendered:
        if r.emission.event == "exists":
            b, e = (r.emission.extra[k] for k in ("audit_period_beginning", "audit_period_ending"))
            exists.setdefault(r.instance_id, []).append({
                "message_id": r.message_id, "format": r.fmt,
                "audit_period_beginning": format_time(_dt(b)),
                "audit_period_ending": format_time(_dt(e)),
                "periodic": b % params.period_us == 0 and e - b == params.period_us})
    whole = fmt != "legacy"
    instances = [to_json(truth(life, params.end, whole), params.period_us,
                         exists.get(life.id.instance_id, [])) for life in cloud.lives]
    doc = {"seed": params.seed, "start": format_time(_dt(params.start)),
           "end": format_time(_dt(params.end)), "period": params.period, "format": fmt,
           "audit": params.audit, "messages": len(rendered), "instances": instances,
           "corrupted": corrupted}
    failing = fail.base_failures(rendered)
    items: list[Rendered | fail.Message] = [*rendered]
    if failures:
        extra, made = fail.generate(params.seed, params.cells, params.start, params.end,
                                    failures)
        items = sorted([*rendered, *extra], key=lambda r: (r.at, r.instance_id, r.fmt))
        failing += made
    doc["failing_requests"] = failing
    ordered = deliver(items, [r.at for r in items], delivery or Delivery(params.seed))
    return Traffic(cloud, ordered, doc)


def _dt(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def _corrupt(rendered: list[Rendered], count: int, params: Params) -> list[dict[str, str]]:
    """Spoil *count* periodic exists, one field each, in turn through :data:`CORRUPTIBLE`."""
    rng = random.Random(f"{params.seed}:corrupt")
    candidates = [r for r in rendered if r.emission.event == "exists"
                  and r.emission.extra["audit_period_ending"] % params.period_us == 0]
    out = []
    for n, r in enumerate(rng.sample(candidates, min(count, len(candidates)))):
        name = CORRUPTIBLE[n % len(CORRUPTIBLE)]
        if name == "deleted_at" and r.emission.snap.terminated_at is not None:
            name = "tenant_id"
        if r.fmt == "versioned":  # no instance_type_id, no image properties there
            name = _VERSIONED_FIELD.get(name, name)
        _spoil(r, name)
        out.append({"message_id": r.message_id, "field": name, "format": r.fmt})
    return out


def _spoil(r: Rendered, name: str) -> None:
    payload = r.message["payload"]
    legacy = r.fmt == "legacy"
    data = payload if legacy else payload["nova_object.data"]
    snap, ending = r.emission.snap, r.emission.extra["audit_period_ending"]
    when = old_time if legacy else iso_time
    if name == "launched_at":
        data["launched_at"] = when((snap.launched_at or 0) + 7 * SECOND)
    elif name == "tenant_id":
        data["tenant_id"] = "0" * 32
    elif name in ("instance_type_id", "flavor_id"):
        if legacy:
            data["instance_type_id" if name == "instance_type_id" else "instance_flavor_id"] = "999"
        else:
            data["flavor"]["nova_object.data"]["flavorid"] = "999"
    elif name in ("os_distro", "os_version", "os_architecture"):
        if legacy:
            key = {"os_architecture": "architecture"}.get(name, name)
            data["image_meta"][f"org.openstack__1__{key}"] = "corrupted"
        else:
            data["architecture"] = "corrupted"
    elif name == "deleted_at":
        data["deleted_at" if legacy else "terminated_at"] = when(ending - SECOND)
        if legacy:
            data["terminated_at"] = data["deleted_at"]
    else:
        period = r.emission.extra["audit_period_ending"] - r.emission.extra["audit_period_beginning"]
        key = "audit_period_beginning"
        begin = r.emission.extra[key] - period
        if legacy:
            data[key] = old_time(begin)
        else:
            data["audit_period"]["nova_object.data"][key] = iso_time(begin)
