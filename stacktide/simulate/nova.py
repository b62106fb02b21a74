"""Emissions rendered as nova puts them on the wire: legacy and/or versioned, oslo 1.0 or 2.0.

Legacy bodies follow the notigen templates of the corpus (real Rackspace traffic): the flat
``info_from_instance`` payload with ``state``/``state_description``, ``old_state``/
``new_task_state`` on updates, times as ``str(datetime)`` with microseconds, ``image_meta``
with the ``org.openstack__1__*`` properties, ``_context_*`` keys. Versioned bodies follow
nova's ``doc/notification_samples`` (``nova_object.*`` wrappers, InstanceActionPayload and
friends) with times in whole seconds, as oslo's isotime writes them. Both formats of one
announcement go out together (nova's ``notification_format=both``); the versioned one a few
microseconds later.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stacktide.schema import CapturedMessage
from stacktide.simulate.model import SECOND, Emission, FlavorSpec, Identity, Snap, new_uuid

AMQP_PROPERTIES = {"content_type": "application/json", "content_encoding": "utf-8",
                   "delivery_mode": 2}
"""What oslo's notifier sets that matters to a broker: persistent messages (delivery mode 2),
which a durable queue keeps through a broker restart; transient ones it drops."""

FORMATS = ("legacy", "versioned", "both")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_VERSIONED_NAMES = {"resize.prep": "resize_prep", "finish_resize": "resize_finish",
                    "resize.confirm": "resize_confirm", "resize.revert": "resize_revert"}


@dataclass(frozen=True, slots=True)
class Rendered:
    """One notification: the oslo 1.0 message dict and where it goes."""

    at: int
    cell: str
    instance_id: str
    fmt: str
    emission: Emission
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
        return CapturedMessage(self.cell, "nova", f"{topic}.{self.message['priority'].lower()}",
                               body, dict(AMQP_PROPERTIES))


def old_time(us: int | None) -> str:
    """nova's legacy form: ``str(datetime)``, microseconds kept; '' for none."""
    return "" if us is None else str((_EPOCH + timedelta(microseconds=us)).replace(tzinfo=None))


def iso_time(us: int | None) -> str | None:
    """oslo's isotime: whole seconds and Z (what versioned payloads carry)."""
    if us is None:
        return None
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Renderer:
    """Turns emissions into messages; ids come from one seeded RNG, so output is repeatable."""

    def __init__(self, seed: int, fmt: str = "legacy") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self.rng, self.fmt = random.Random(f"{seed}:render"), fmt

    def render(self, ident: Identity, e: Emission) -> list[Rendered]:
        out = []
        if self.fmt in ("legacy", "both"):
            out.append(self._message(ident, e, e.at, "legacy", f"compute.instance.{e.event}",
                                     f"{e.service}.{e.host}", legacy_payload(ident, e)))
        if self.fmt in ("versioned", "both"):
            name = e.event
            for old, new in _VERSIONED_NAMES.items():
                name = name.replace(old, new)
            at = e.at + (self.rng.randrange(1, 999) if self.fmt == "both" else 0)
            out.append(self._message(ident, e, at, "versioned", f"instance.{name}",
                                     f"nova-{e.service}:{e.host}", versioned_payload(ident, e)))
        return out

    def _message(self, ident: Identity, e: Emission, at: int, fmt: str, event_type: str,
                 publisher: str, payload: dict[str, Any]) -> Rendered:
        rng = self.rng
        msg = {
            "message_id": new_uuid(rng), "publisher_id": publisher, "event_type": event_type,
            "priority": e.priority, "payload": payload, "timestamp": old_time(at),
            "_unique_id": f"{rng.getrandbits(128):032x}",
            "_context_request_id": e.request_id, "_context_global_request_id": None,
            "_context_user_id": ident.user_id, "_context_user": ident.user_id,
            "_context_project_id": ident.tenant_id, "_context_tenant": ident.tenant_id,
            "_context_is_admin": e.event == "exists", "_context_read_deleted": "no",
            "_context_roles": ["admin"] if e.event == "exists" else ["member", "reader"],
            "_context_auth_token": f"{rng.getrandbits(128):032x}",
            "_context_timestamp": old_time(at - rng.randrange(SECOND)),
        }
        return Rendered(at, ident.cell, ident.instance_id, fmt, e, msg)


def legacy_payload(ident: Identity, e: Emission) -> dict[str, Any]:
    s, f, img = e.snap, e.snap.flavor, e.snap.image
    payload: dict[str, Any] = {
        "tenant_id": ident.tenant_id, "user_id": ident.user_id, "instance_id": ident.instance_id,
        "display_name": ident.display_name, "hostname": ident.display_name,
        "reservation_id": f"r-{ident.instance_id[:8]}", "instance_type": f.name,
        "instance_type_id": f.type_id, "instance_flavor_id": f.flavorid,
        "architecture": img.architecture, "memory_mb": f.memory_mb,
        "disk_gb": f.root_gb + f.ephemeral_gb, "vcpus": f.vcpus, "root_gb": f.root_gb,
        "ephemeral_gb": f.ephemeral_gb, "host": s.host, "node": s.host,
        "availability_zone": None, "cell_name": ident.cell,
        "created_at": old_time(ident.created_at), "launched_at": old_time(s.launched_at),
        "terminated_at": old_time(s.terminated_at),
        "deleted_at": old_time(_deleted(e)),
        "image_ref_url": f"http://glance.{ident.cell}:9292/images/{img.uuid}",
        "os_type": img.os_type, "kernel_id": "", "ramdisk_id": "", "state": s.vm_state,
        "state_description": s.task_state or "", "progress": "", "access_ip_v4": None,
        "access_ip_v6": None, "metadata": {}, "image_meta": image_meta(s),
    }
    if e.old is not None:
        start = e.at - e.at % 3_600_000_000
        payload.update(old_state=e.old.vm_state, old_task_state=e.old.task_state, new_task_state=s.task_state,
                       audit_period_beginning=old_time(start), audit_period_ending=old_time(e.at),
                       bandwidth={}, old_display_name=None)
    elif e.event != "exists":
        payload["fixed_ips"] = [{"address": _address(ident), "type": "fixed", "version": 4,
                                 "label": "private", "meta": {}, "floating_ips": []}]
        if e.event.startswith(("create.", "rebuild.")):
            payload["image_name"] = img.name
        if e.event == "create.start":
            payload["message"] = ""
        if e.event.startswith("rescue."):
            payload["rescue_image_name"] = img.name
        if e.event == "create.error":
            payload["code"] = 500
    payload.update({k: old_time(v) if k.startswith("audit_") else v for k, v in e.extra.items()
                    if k != "new_flavor"})
    if e.event == "exists":
        payload["bandwidth"] = {}
    return payload


def _address(ident: Identity) -> str:
    n = int(ident.instance_id[:6], 16)
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255 or 1}"


def _deleted(e: Emission) -> int | None:
    """deleted_at is set when the row is destroyed, after the update that terminated it."""
    return e.snap.terminated_at if e.snap.vm_state == "deleted" and e.old is None else None


def image_meta(s: Snap) -> dict[str, str]:
    img = s.image
    return {"base_image_ref": img.uuid, "image_type": "base", "container_format": "bare",
            "disk_format": "qcow2", "min_disk": str(s.flavor.root_gb), "min_ram": "0",
            "os_type": img.os_type, "os_distro": img.os_distro.split(".")[-1],
            "os_version": img.os_version, "org.openstack__1__architecture": img.architecture,
            "org.openstack__1__os_distro": img.os_distro,
            "org.openstack__1__os_version": img.os_version}


def _obj(name: str, data: dict[str, Any], version: str = "1.0") -> dict[str, Any]:
    return {"nova_object.name": name, "nova_object.namespace": "nova",
            "nova_object.version": version, "nova_object.data": data}


def _flavor(f: FlavorSpec) -> dict[str, Any]:
    return _obj("FlavorPayload", {
        "flavorid": f.flavorid, "name": f.name, "root_gb": f.root_gb, "vcpus": f.vcpus,
        "ephemeral_gb": f.ephemeral_gb, "memory_mb": f.memory_mb, "disabled": False,
        "rxtx_factor": 1.0, "extra_specs": {}, "projects": None, "swap": 0, "is_public": True,
        "vcpu_weight": 0, "description": None}, "1.4")


def versioned_payload(ident: Identity, e: Emission) -> dict[str, Any]:
    s, f, img = e.snap, e.snap.flavor, e.snap.image
    data: dict[str, Any] = {
        "architecture": img.architecture, "availability_zone": "nova", "block_devices": [],
        "created_at": iso_time(ident.created_at),
        "deleted_at": iso_time(_deleted(e)),
        "display_name": ident.display_name, "display_description": ident.display_name,
        "host": s.host, "host_name": ident.display_name, "ip_addresses": [], "kernel_id": "",
        "key_name": None, "launched_at": iso_time(s.launched_at), "image_uuid": img.uuid,
        "metadata": {}, "locked": False, "node": s.host, "os_type": img.os_type, "progress": 0,
        "ramdisk_id": "", "reservation_id": f"r-{ident.instance_id[:8]}", "state": s.vm_state,
        "task_state": s.task_state, "power_state": s.power_state, "tenant_id": ident.tenant_id,
        "terminated_at": iso_time(s.terminated_at), "auto_disk_config": "MANUAL",
        "flavor": _flavor(f),
        "updated_at": iso_time(e.at), "user_id": ident.user_id, "uuid": ident.instance_id,
        "request_id": e.request_id, "action_initiator_user": ident.user_id,
        "action_initiator_project": ident.tenant_id, "locked_reason": None, "shares": [],
    }
    if e.old is not None:
        data.update(state_update=_obj("InstanceStateUpdatePayload", {
            "old_state": e.old.vm_state, "state": s.vm_state, "old_task_state": e.old.task_state,
            "new_task_state": s.task_state}), old_display_name=None, tags=[],
            audit_period=_obj("AuditPeriodPayload", {
                "audit_period_beginning": iso_time(e.at - e.at % 3_600_000_000),
                "audit_period_ending": iso_time(e.at)}))
        return _obj("InstanceUpdatePayload", data, "2.1")
    if e.event == "exists":
        data["audit_period"] = _obj("AuditPeriodPayload", {
            "audit_period_beginning": iso_time(e.extra["audit_period_beginning"]),
            "audit_period_ending": iso_time(e.extra["audit_period_ending"])})
        return _obj("InstanceExistsPayload", data, "2.1")
    data["fault"] = _obj("ExceptionPayload", {
        "exception": e.extra["exception"], "exception_message": e.extra["message"],
        "function_name": "_build_and_run_instance", "module_name": "nova.compute.manager",
        "traceback": ""}, "1.1") if e.priority == "ERROR" else None
    if e.event.startswith("create."):
        data.update(keypairs=[], tags=[], trusted_image_certificates=None,
                    instance_name=f"instance-{ident.instance_id[:8]}")
        return _obj("InstanceCreatePayload", data, "1.13")
    if e.event.startswith("rebuild."):
        data["trusted_image_certificates"] = None
        return _obj("InstanceActionRebuildPayload", data, "1.10")
    if e.event.startswith("rescue."):
        data["rescue_image_ref"] = img.uuid
        return _obj("InstanceActionRescuePayload", data, "1.4")
    if e.event.startswith("resize.prep.") and "new_flavor" in e.extra:
        data["new_flavor"] = _flavor(e.extra["new_flavor"])
        return _obj("InstanceActionResizePrepPayload", data, "1.4")
    return _obj("InstanceActionPayload", data, "1.9")
