"""Failing requests with known root causes, beside the simulated cloud's ordinary traffic.

Four shapes, each a request of its own on a new instance, spread over the simulated span:

* ``no_valid_host``: nova-api accepts a boot, the scheduler finds no host, the conductor
  sends ``compute_task.build_instances`` (legacy, priority ERROR, ``reason`` text) and
  ``compute_task.build_instances.error`` (versioned, ``reason`` ExceptionPayload NoValidHost).
* ``compute_error``: compute starts the build and fails mid-spawn (``create.error`` with the
  hypervisor's exception); the conductor then gives up rescheduling (MaxRetriesExceeded), a
  second error whose root cause is the first.
* ``volume_attach``: cinder (its own request id, nova's as ``global_request_id``) fails to
  attach (an ERROR notification of cinder), then nova reports ``instance.volume_attach.error``.
* ``port_failure``: neutron (its own request id, nova's as global) updates the port and fails
  the binding; nova's build ends in ``create.error`` with PortBindingFailed.

The truth names, per failing request, its request id (the key of the ``requests`` table),
its kind, the message id of its root cause (the first error) and that error's exception.
:func:`base_failures` adds the create errors of the ordinary traffic (jobs/requests.py keys a
request by its global id when there is one, else by its request id).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stacktide.schema import CapturedMessage
from stacktide.simulate.model import SECOND, new_uuid
from stacktide.simulate.nova import AMQP_PROPERTIES, Rendered, old_time

KINDS = ("no_valid_host", "compute_error", "volume_attach", "port_failure")
EXCHANGES = {"nova": "nova", "cinder": "openstack", "neutron": "neutron"}


@dataclass(frozen=True, slots=True)
class Message:
    """One notification of a failing request, shaped like :class:`~.nova.Rendered` for delivery."""

    at: int
    cell: str
    instance_id: str
    fmt: str
    exchange: str
    message: dict[str, Any]

    @property
    def message_id(self) -> str:
        return str(self.message["message_id"])

    @property
    def event_type(self) -> str:
        return str(self.message["event_type"])

    def captured(self, envelope: str = "2.0") -> CapturedMessage:
        inner = json.dumps(self.message)
        body = inner if envelope == "1.0" else json.dumps({"oslo.version": "2.0",
                                                           "oslo.message": inner})
        topic = "notifications" if self.fmt == "legacy" else "versioned_notifications"
        return CapturedMessage(self.cell, self.exchange,
                               f"{topic}.{self.message['priority'].lower()}", body,
                               dict(AMQP_PROPERTIES))


class _Request:
    """Builds the messages of one request; times advance a little at each message."""

    def __init__(self, rng: random.Random, cell: str, at: int, tenant: str) -> None:
        self.rng, self.cell, self.t, self.tenant = rng, cell, at, tenant
        self.request_id = f"req-{new_uuid(rng)}"
        self.instance_id = new_uuid(rng)
        self.out: list[Message] = []

    def send(self, event_type: str, publisher: str, payload: dict[str, Any], *,
             priority: str = "INFO", fmt: str = "legacy", service: str = "nova",
             request_id: str | None = None, global_request_id: str | None = None,
             gap_ms: tuple[int, int] = (20, 1500)) -> Message:
        self.t += self.rng.randrange(gap_ms[0] * 1000, gap_ms[1] * 1000) + 1
        msg = {"message_id": new_uuid(self.rng), "publisher_id": publisher,
               "event_type": event_type, "priority": priority, "payload": payload,
               "timestamp": old_time(self.t),
               "_context_request_id": request_id or self.request_id,
               "_context_global_request_id": global_request_id,
               "_context_project_id": self.tenant, "_context_user_id": "u" + self.tenant[:8]}
        out = Message(self.t, self.cell, self.instance_id, fmt, EXCHANGES[service], msg)
        self.out.append(out)
        return out

    def instance(self, state: str, task: str | None, **extra: Any) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "tenant_id": self.tenant, "state": state,
                "state_description": task or "", "host": extra.pop("host", None), **extra}


def _fault(exception: str, message: str) -> dict[str, Any]:
    return {"nova_object.name": "ExceptionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.1", "nova_object.data": {
                "exception": exception, "exception_message": message,
                "function_name": "_build_and_run_instance", "module_name": "nova.compute.manager",
                "traceback": ""}}


def _versioned(instance_id: str, **data: Any) -> dict[str, Any]:
    return {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
            "nova_object.version": "1.9", "nova_object.data": {"uuid": instance_id, **data}}


def no_valid_host(r: _Request, api: str, scheduler: str) -> tuple[Message, str]:
    r.send("compute.instance.update", f"api.{api}", r.instance("building", "scheduling"))
    r.send("scheduler.select_destinations.start", f"scheduler.{scheduler}", {})
    reason = "No valid host was found. There are not enough hosts available."
    root = r.send("compute_task.build_instances", f"conductor.{scheduler}",
                  {"instance_id": r.instance_id, "reason": reason, "state": "error",
                   "method": "build_instances"}, priority="ERROR", gap_ms=(200, 3000))
    r.send("compute_task.build_instances.error", f"nova-conductor:{scheduler}", {
        "nova_object.name": "ComputeTaskPayload", "nova_object.namespace": "nova",
        "nova_object.version": "1.0", "nova_object.data": {
            "instance_uuid": r.instance_id, "state": "error",
            "reason": _fault("NoValidHost", reason)}}, priority="ERROR", fmt="versioned",
        gap_ms=(0, 1))
    r.send("compute.instance.update", f"conductor.{scheduler}", r.instance("error", None))
    return root, "NoValidHost"


def compute_error(r: _Request, api: str, host: str) -> tuple[Message, str]:
    r.send("compute.instance.update", f"api.{api}", r.instance("building", "scheduling"))
    r.send("compute.instance.create.start", f"compute.{host}", r.instance("building", None,
                                                                          host=host))
    for task in ("networking", "block_device_mapping", "spawning"):
        r.send("compute.instance.update", f"compute.{host}",
               r.instance("building", task, host=host))
    message = "internal error: qemu unexpectedly closed the monitor"
    root = r.send("compute.instance.create.error", f"compute.{host}", r.instance(
        "building", "spawning", host=host, exception="libvirtError", message=message,
        code=500), priority="ERROR", gap_ms=(1000, 20_000))
    r.send("compute_task.build_instances.error", f"nova-conductor:{api}", {
        "nova_object.name": "ComputeTaskPayload", "nova_object.namespace": "nova",
        "nova_object.version": "1.0", "nova_object.data": {
            "instance_uuid": r.instance_id, "state": "error", "reason": _fault(
                "MaxRetriesExceeded", f"Exceeded maximum number of retries. Exhausted all "
                f"hosts available for retrying build failures for instance {r.instance_id}.")}},
        priority="ERROR", fmt="versioned")
    return root, "libvirtError"


def volume_attach(r: _Request, api: str, host: str) -> tuple[Message, str]:
    cinder = f"req-{new_uuid(r.rng)}"
    volume = new_uuid(r.rng)
    r.send("instance.volume_attach.start", f"nova-compute:{host}",
           _versioned(r.instance_id, host=host, state="active", volume_id=volume),
           fmt="versioned")
    r.send("volume.attach.start", f"volume.{host}-cinder", {"volume_id": volume,
           "tenant_id": r.tenant, "status": "attaching"}, service="cinder", request_id=cinder,
           global_request_id=r.request_id)
    message = (f"Unable to attach volume {volume}: the backend refused the connection "
               "(HTTP 500)")
    root = r.send("volume.attach.error", f"volume.{host}-cinder", {
        "volume_id": volume, "tenant_id": r.tenant, "status": "error_attaching",
        "exception": "VolumeBackendAPIException", "message": message}, priority="ERROR",
        service="cinder", request_id=cinder, global_request_id=r.request_id)
    r.send("instance.volume_attach.error", f"nova-compute:{host}", _versioned(
        r.instance_id, host=host, state="active", volume_id=volume,
        fault=_fault("VolumeAttachFailed", f"Volume {volume} could not be attached.")),
        priority="ERROR", fmt="versioned")
    return root, "VolumeBackendAPIException"


def port_failure(r: _Request, api: str, host: str) -> tuple[Message, str]:
    neutron, port = f"req-{new_uuid(r.rng)}", new_uuid(r.rng)
    r.send("compute.instance.update", f"api.{api}", r.instance("building", "scheduling"))
    r.send("compute.instance.create.start", f"compute.{host}", r.instance("building", None,
                                                                          host=host))
    r.send("compute.instance.update", f"compute.{host}", r.instance("building", "networking",
                                                                    host=host))
    for event in ("port.update.start", "port.update.end"):
        r.send(event, f"network.{api}", {"port": {"id": port, "device_id": r.instance_id,
               "binding:vif_type": "binding_failed", "binding:host_id": host}},
               service="neutron", request_id=neutron, global_request_id=r.request_id)
    message = (f"Binding failed for port {port}, please check neutron logs for more "
               "information.")
    root = r.send("compute.instance.create.error", f"compute.{host}", r.instance(
        "building", "networking", host=host, exception="PortBindingFailed", message=message,
        code=500), priority="ERROR")
    r.send("compute.instance.update", f"compute.{host}", r.instance("error", None, host=host))
    return root, "PortBindingFailed"


SHAPES = {"no_valid_host": no_valid_host, "compute_error": compute_error,
          "volume_attach": volume_attach, "port_failure": port_failure}


def generate(seed: int, cells: tuple[str, ...], start: int, end: int,
             each: int = 1) -> tuple[list[Message], list[dict[str, Any]]]:
    """*each* failing request of every kind, at seeded times in [start, end)."""
    rng = random.Random(f"{seed}:failures")
    messages: list[Message] = []
    truth = []
    for kind in KINDS:
        for _ in range(each):
            cell = rng.choice(cells)
            at = rng.randrange(start, max(start + 1, end - 600 * SECOND))
            r = _Request(rng, cell, at, f"{rng.getrandbits(128):032x}")
            api, host = f"{cell}-api", f"{cell}-compute{rng.randrange(4)}"
            root, exception = SHAPES[kind](r, api, host)
            messages.extend(r.out)
            truth.append({"request_id": r.request_id, "kind": kind, "cell": cell,
                          "instance_id": r.instance_id, "root_cause_message_id": root.message_id,
                          "exception": exception,
                          "errors": [m.message_id for m in r.out
                                     if m.message["priority"] == "ERROR"]})
    return messages, truth


def base_failures(rendered: Iterable[Rendered]) -> list[dict[str, Any]]:
    """The failing requests of the ordinary traffic: its create errors (the first one of a
    request, by time then message id, is the root cause)."""
    found: dict[str, list[Rendered]] = {}
    for r in rendered:
        if r.message["priority"] == "ERROR":
            found.setdefault(str(r.message["_context_request_id"]), []).append(r)
    out = []
    for request_id, errors in sorted(found.items()):
        first = min(errors, key=lambda r: (r.at, r.message_id))
        out.append({"request_id": request_id, "kind": "create_error", "cell": first.cell,
                    "instance_id": first.instance_id, "root_cause_message_id": first.message_id,
                    "exception": first.emission.extra.get("exception"),
                    "errors": sorted(r.message_id for r in errors)})
    return out
