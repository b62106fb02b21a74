"""The agent against a real libvirtd with the QEMU driver: the bulk path and the meter mapping
on real stats, a domain that vanishes, and a libvirtd restart under a running agent."""

from __future__ import annotations

import threading
import time
import uuid

import libvirt

from host_agent.agent import HostAgent
from host_agent.libvirt_source import LibvirtSource
from host_agent.meters import load_meters
from stacktide.config import DEFAULT_CONFIG
from tests.host_agent.conftest import QemuHost

METERS = load_meters(DEFAULT_CONFIG.parent / "meters.yaml")


def _by_domain(result: object) -> dict[str, dict[tuple[str, str | None], float]]:
    out: dict[str, dict[tuple[str, str | None], float]] = {}
    for info, r in result.readings:  # type: ignore[attr-defined]
        out.setdefault(info.uuid, {})[(r.meter.name, r.device)] = r.value
    return out


def test_bulk_stats_of_real_qemu_domains_map_to_ceilometer_meters(qemu_host: QemuHost) -> None:
    source = LibvirtSource(qemu_host.daemon.uri, METERS)
    try:
        first = source.poll()
        time.sleep(1.0)
        second = source.poll()
    finally:
        source.close()
    # One bulk call carried every group: no per-domain call was needed.
    assert (first.domains, first.gone, first.fallback_calls) == (3, 0, 0)
    assert second.fallback_calls == 0
    infos = {info.uuid: info.instance_id for info, _ in first.readings}
    assert infos == qemu_host.instances  # nova metadata where there is some, else the domain uuid
    a, b = _by_domain(first), _by_domain(second)
    conn = libvirt.openReadOnly(qemu_host.daemon.uri)
    try:
        for dom_uuid, values in a.items():
            dom = conn.lookupByUUIDString(dom_uuid)
            assert values[("power.state", None)] == libvirt.VIR_DOMAIN_RUNNING
            assert values[("vcpus", None)] == 1
            assert 0 < values[("cpu", None)] <= b[dom_uuid][("cpu", None)] <= dom.info()[4]
            rss = values[("memory.resident", None)]  # MiB; QEMU's RSS moves between two reads
            assert rss > 0 and abs(rss - dom.memoryStats()["rss"] / 1024) < 64
            assert values[("disk.device.capacity", "vda")] == dom.blockInfo("vda")[0] == 1 << 20
            assert values[("disk.device.read.requests", "vda")] == dom.blockStats("vda")[0]
            assert ("disk.device.write.bytes", "vda") in values
    finally:
        conn.close()


def test_a_destroyed_domain_leaves_the_next_poll_quietly(qemu_host: QemuHost) -> None:
    daemon = qemu_host.daemon
    dom_uuid = str(uuid.uuid4())
    daemon.create("short-lived", dom_uuid)
    source = LibvirtSource(daemon.uri, METERS)
    try:
        assert dom_uuid in _by_domain(source.poll())
        conn = libvirt.open(daemon.uri)
        conn.lookupByUUIDString(dom_uuid).destroy()
        conn.close()
        after = source.poll()
        assert dom_uuid not in _by_domain(after) and after.domains == 3
    finally:
        source.close()


def test_libvirtd_restart_costs_polls_not_the_agent(qemu_host: QemuHost) -> None:
    agent = HostAgent(LibvirtSource(qemu_host.daemon.uri, METERS), "cmp1",
                      lambda d: 0, interval_s=0.1, reconnect_initial_s=0.1,
                      reconnect_max_s=0.5)
    thread = threading.Thread(target=agent.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while agent.samples_sent == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        qemu_host.daemon.stop()
        time.sleep(1.0)  # polls while the daemon is away fail
        before = agent.samples_sent
        qemu_host.daemon.start()
        while agent.samples_sent == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert thread.is_alive()
    finally:
        agent.stop.set()
        thread.join(10)
    polls = agent.metrics.registry.get_sample_value
    assert (polls("stacktide_host_agent_polls_total", {"outcome": "error"}) or 0) >= 1
    assert agent.samples_sent > before > 0
    # The domains kept running through the restart and are read again.
    assert polls("stacktide_host_agent_domains", {}) == 3
