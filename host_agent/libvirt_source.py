"""Reading libvirt: one bulk call per poll, per-domain calls only for what the bulk call lacked.

``virConnectGetAllDomainStats`` returns every domain's stats in one round trip, keyed as
``cpu.time``, ``block.0.rd.bytes`` …; a Ceilometer-style inspector makes one call per domain
and meter instead. Where a driver's bulk stats lack a group (libvirt's test driver returns
only ``state``), that group is read per domain with the classic calls, into the same keys,
so one meter mapping serves both paths.

The connection is read-only. What a domain's XML says (instance uuid, disks, interfaces) is
read once per domain and cached. Errors are translated at this boundary: a domain that
vanished mid-poll is :class:`DomainGone` (it misses this poll's samples), a device that
cannot report is skipped, a broken connection is :class:`LibvirtUnavailable` (the agent
reconnects with backoff).
"""

from __future__ import annotations

import contextlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import libvirt

from host_agent.meters import GROUPS, MeterMap, Reading
from stacktide.errors import StacktideError

log = logging.getLogger(__name__)

NOVA_NS_PREFIX = "http://openstack.org/xmlns/libvirt/nova/"
GROUP_FLAGS = {
    "state": libvirt.VIR_DOMAIN_STATS_STATE,
    "cpu": libvirt.VIR_DOMAIN_STATS_CPU_TOTAL,
    "balloon": libvirt.VIR_DOMAIN_STATS_BALLOON,
    "vcpu": libvirt.VIR_DOMAIN_STATS_VCPU,
    "interface": libvirt.VIR_DOMAIN_STATS_INTERFACE,
    "block": libvirt.VIR_DOMAIN_STATS_BLOCK,
}
ACTIVE_STATES = {libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED}
GONE_CODES = {libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID}
CONNECTION_CODES = {libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT,
                    libvirt.VIR_ERR_INVALID_CONN}

# libvirt prints every error it raises on stderr unless a handler is registered.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class LibvirtUnavailable(StacktideError):
    """The connection to libvirt is down (daemon restart, socket gone)."""


class DomainGone(StacktideError):
    """A domain disappeared between listing and reading it."""


class NoData(StacktideError):
    """The driver cannot give this group for this domain (unsupported call, no such device)."""


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """What the domain XML says, read once per domain."""

    uuid: str
    instance_id: str
    disks: tuple[str, ...]
    interfaces: tuple[str, ...]


@dataclass(slots=True)
class PollResult:
    readings: list[tuple[DomainInfo, Reading]] = field(default_factory=list)
    domains: int = 0
    gone: int = 0
    fallback_calls: int = 0


def domain_info(uuid: str, xml: str) -> DomainInfo:
    """Instance uuid (nova's metadata when it names one, else the domain uuid), disks, NICs.

    Nova gives a domain its instance's uuid; a ``uuid`` in the ``nova:instance`` metadata,
    when there is one, wins, so a domain defined otherwise still reports the instance."""
    root = ET.fromstring(xml)  # noqa: S314 - written by libvirtd itself, not by a guest
    instance = uuid
    for element in root.iterfind("metadata/*"):
        if element.tag.startswith("{" + NOVA_NS_PREFIX) and element.tag.endswith("}instance"):
            named = element.get("uuid") or next(
                (e.text for e in element if e.tag.endswith("}uuid") and e.text), None)
            instance = (named or uuid).strip()
    disks = tuple(t.get("dev", "") for t in root.iterfind("devices/disk[@device='disk']/target"))
    nics = tuple(t.get("dev", "") for t in root.iterfind("devices/interface/target"))
    return DomainInfo(uuid, instance, tuple(d for d in disks if d), tuple(n for n in nics if n))


def _gone(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_code() in GONE_CODES


class LibvirtSource:
    """A read-only libvirt connection and the poll over it."""

    def __init__(self, uri: str, meters: MeterMap) -> None:
        self.uri, self.meters = uri, meters
        self.flags = 0
        for group in meters.groups:
            self.flags |= GROUP_FLAGS[group]
        self._conn: libvirt.virConnect | None = None
        self._info: dict[str, DomainInfo] = {}

    def connect(self) -> None:
        self.close()
        try:
            self._conn = libvirt.openReadOnly(self.uri)
        except libvirt.libvirtError as exc:
            raise LibvirtUnavailable(f"{self.uri}: {exc.get_error_message()}") from exc

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def poll(self) -> PollResult:
        """One bulk call; per-domain calls only for groups it lacked. Raises LibvirtUnavailable."""
        if self._conn is None:
            self.connect()
        conn = self._conn
        assert conn is not None
        try:
            stats = conn.getAllDomainStats(self.flags, 0)
        except libvirt.libvirtError as exc:
            self.close()
            raise LibvirtUnavailable(f"{self.uri}: {exc.get_error_message()}") from exc
        result = PollResult(domains=len(stats))
        seen: set[str] = set()
        for dom, record in stats:
            try:
                info = self.domain_info_of(dom)
                seen.add(info.uuid)
                result.fallback_calls += self.fill_missing(dom, info, record)
            except DomainGone:
                result.gone += 1
                continue
            except LibvirtUnavailable:
                self.close()
                raise
            result.readings.extend((info, r) for r in self.meters.readings(record))
        for uuid in set(self._info) - seen:  # forget domains that are gone for good
            del self._info[uuid]
        return result

    def domain_info_of(self, dom: libvirt.virDomain) -> DomainInfo:
        uuid = dom.UUIDString()
        info = self._info.get(uuid)
        if info is None:
            info = domain_info(uuid, _call(dom.XMLDesc, 0))
            self._info[uuid] = info
        return info

    def fill_missing(self, dom: libvirt.virDomain, info: DomainInfo, record: dict[str, Any]) -> int:
        """Read per domain the groups the bulk *record* lacks, into it; returns the calls made.
        Raises DomainGone when the domain vanished since the bulk call."""
        missing = [g for g in self.meters.groups if GROUPS[g][0] not in record]
        if not missing:
            return 0
        if "state" in missing:
            record["state.state"] = _call(dom.state)[0]
        if record["state.state"] not in ACTIVE_STATES:
            return 1  # a stopped domain has no CPU, memory or device stats
        calls = 1 if "state" in missing else 0
        for group in missing:
            try:
                calls += _FALLBACK[group](dom, info, record)
            except NoData as exc:
                calls += 1
                log.debug("event=no_data domain=%s group=%s error=%s", info.uuid, group, exc)
        return calls


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """A per-domain call, its libvirt errors translated."""
    try:
        return fn(*args)
    except libvirt.libvirtError as exc:
        if _gone(exc):
            raise DomainGone(str(exc)) from exc
        if exc.get_error_code() in CONNECTION_CODES:
            raise LibvirtUnavailable(exc.get_error_message()) from exc
        raise NoData(exc.get_error_message()) from exc


def _device_call(fn: Callable[..., Any], dev: str) -> Any:
    """A per-device call; None when this device cannot report (e.g. a user-mode NIC)."""
    try:
        return fn(dev)
    except libvirt.libvirtError as exc:
        if _gone(exc):
            raise DomainGone(str(exc)) from exc
        if exc.get_error_code() in CONNECTION_CODES:
            raise LibvirtUnavailable(exc.get_error_message()) from exc
        log.debug("event=device_no_data device=%s error=%s", dev, exc.get_error_message())
        return None


def _cpu(dom: libvirt.virDomain, _info: DomainInfo, record: dict[str, Any]) -> int:
    # virDomainGetInfo, not GetCPUStats: the latter needs the cgroup CPU accounting controller,
    # which a host (or container) may not mount.
    record["cpu.time"] = _call(dom.info)[4]
    return 1


def _vcpu(dom: libvirt.virDomain, _info: DomainInfo, record: dict[str, Any]) -> int:
    record["vcpu.current"] = _call(dom.info)[3]
    return 1


def _balloon(dom: libvirt.virDomain, _info: DomainInfo, record: dict[str, Any]) -> int:
    stats = _call(dom.memoryStats)
    record["balloon.current"] = stats.get("actual")
    for key in ("available", "usable", "unused", "rss", "swap_in", "swap_out"):
        if key in stats:
            record[f"balloon.{key}"] = stats[key]
    return 1


def _block(dom: libvirt.virDomain, info: DomainInfo, record: dict[str, Any]) -> int:
    record["block.count"] = len(info.disks)
    calls = 0
    for i, dev in enumerate(info.disks):
        record[f"block.{i}.name"] = dev
        io = _device_call(dom.blockStats, dev)
        size = _device_call(lambda d: dom.blockInfo(d, 0), dev)
        calls += 2
        if io is not None:
            for key, value in zip(("rd.reqs", "rd.bytes", "wr.reqs", "wr.bytes"), io, strict=False):
                record[f"block.{i}.{key}"] = value
        if size is not None:
            for key, value in zip(("capacity", "allocation", "physical"), size, strict=False):
                record[f"block.{i}.{key}"] = value
    return calls


_NET_KEYS = ("rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "tx.bytes", "tx.pkts", "tx.errs", "tx.drop")


def _interface(dom: libvirt.virDomain, info: DomainInfo, record: dict[str, Any]) -> int:
    record["net.count"] = len(info.interfaces)
    for i, dev in enumerate(info.interfaces):
        record[f"net.{i}.name"] = dev
        stats = _device_call(dom.interfaceStats, dev)
        if stats is not None:
            for key, value in zip(_NET_KEYS, stats, strict=False):
                record[f"net.{i}.{key}"] = value
    return len(info.interfaces)


_FALLBACK: dict[str, Callable[[libvirt.virDomain, DomainInfo, dict[str, Any]], int]] = {
    "state": lambda _d, _i, _r: 0, "cpu": _cpu, "vcpu": _vcpu, "balloon": _balloon,
    "block": _block, "interface": _interface,
}
