"""The agent on libvirt's test driver: many domains, vanishing domains, an unreachable libvirt,
and the whole agent -> UDP -> receiver hop. The test driver's bulk stats carry only the
``state`` group, so every other group comes through the per-domain fallback here."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

import libvirt
import pytest
import yaml
from prometheus_client import start_http_server

from connectors.udp import UdpReceiver
from host_agent.agent import HostAgent, UdpSender, lines
from host_agent.libvirt_source import DomainGone, LibvirtSource
from host_agent.meters import load_meters
from stacktide.config import DEFAULT_CONFIG, UdpConfig
from stacktide.schema import SampleRecord
from stacktide.statsd import parse_line
from tests.host_agent.domains import domain_xml, write_node

METERS = load_meters(DEFAULT_CONFIG.parent / "meters.yaml")
PER_DOMAIN = {"cpu", "vcpus", "memory.usage", "memory.resident", "memory.swap.in", "memory.swap.out",
              "power.state"}
PER_DISK = {m.name for m in METERS.meters if m.group == "block"}
PER_NIC = {m.name for m in METERS.meters if m.group == "interface"}


def test_many_domains_disks_and_interfaces(tmp_path: Path) -> None:
    expected = write_node(tmp_path / "node.xml", domains=40, disks=3, nics=2)
    source = LibvirtSource(f"test://{tmp_path / 'node.xml'}", METERS)
    result = source.poll()
    assert (result.domains, result.gone) == (40, 0)
    got: dict[str, set[tuple[str, str | None]]] = {}
    for info, r in result.readings:
        assert info.instance_id == expected[info.uuid]
        got.setdefault(info.instance_id, set()).add((r.meter.name, r.device))
    want = ({(m, None) for m in PER_DOMAIN} | {(m, d) for m in PER_DISK for d in ("vda", "vdb", "vdc")}
            | {(m, f"dom{{}}-tap{i}") for m in PER_NIC for i in range(2)})
    assert set(got) == set(expected.values())
    for i, (dom_uuid, instance) in enumerate(expected.items()):
        assert got[instance] == {(m, d.format(i) if d else d) for m, d in want}, dom_uuid
    # The values are libvirt's: the same as its classic per-domain calls return.
    conn = libvirt.openReadOnly(f"test://{tmp_path / 'node.xml'}")
    dom = conn.lookupByUUIDString(next(iter(expected)))
    values = {(r.meter.name, r.device): r.value
              for info, r in result.readings if info.uuid == dom.UUIDString()}
    assert values[("disk.device.capacity", "vdb")] == dom.blockInfo("vdb")[0]
    assert values[("vcpus", None)] == dom.info()[3] == 2
    assert values[("memory.resident", None)] == dom.memoryStats()["rss"] / 1024
    assert values[("power.state", None)] == libvirt.VIR_DOMAIN_RUNNING
    conn.close()


def _transient(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    return conn.createXML(domain_xml(name, str(uuid.uuid4()), disks=1, nics=1), 0)


def test_a_domain_gone_since_the_bulk_call_costs_its_samples_only() -> None:
    rw = libvirt.open("test:///default")  # test:///default is one state per process
    source = LibvirtSource("test:///default", METERS)
    try:
        dom = _transient(rw, "vanishing")
        info = source.domain_info_of(dom)
        dom.destroy()
        with pytest.raises(DomainGone):
            source.fill_missing(dom, info, {})
        # Domains come and go while the agent polls: every poll completes, with the stable one.
        stop = threading.Event()

        def churn() -> None:
            while not stop.is_set():
                d = _transient(rw, f"churn{uuid.uuid4().hex[:6]}")
                time.sleep(0.001)
                d.destroy()

        thread = threading.Thread(target=churn)
        thread.start()
        try:
            results = [source.poll() for _ in range(200)]
        finally:
            stop.set()
            thread.join()
        stable = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test driver's built-in domain
        assert all(any(i.uuid == stable and r.meter.name == "cpu" for i, r in res.readings)
                   for res in results)
        assert max(res.domains for res in results) >= 2
    finally:
        source.close()
        rw.close()


def test_a_stopped_domain_reports_its_power_state_only() -> None:
    rw = libvirt.open("test:///default")
    dom = rw.defineXML(domain_xml("stopped", str(uuid.uuid4()), disks=1, nics=1))
    source = LibvirtSource("test:///default", METERS)
    try:
        readings = [r for i, r in source.poll().readings if i.uuid == dom.UUIDString()]
        assert [(r.meter.name, r.value) for r in readings] == [("power.state", libvirt.VIR_DOMAIN_SHUTOFF)]
    finally:
        source.close()
        dom.undefine()
        rw.close()


def test_unreachable_libvirt_costs_polls_never_the_agent(tmp_path: Path) -> None:
    """A libvirt that is not there: polls fail and are counted, the wait backs off, and the
    agent reads as soon as it is back (here: the same agent pointed at the test driver)."""
    source = LibvirtSource(f"qemu+unix:///session?socket={tmp_path}/none", METERS)
    sent: list[list[bytes]] = []

    def send(datagrams: list[bytes]) -> int:
        sent.append(datagrams)
        return 0

    agent = HostAgent(source, "cmp1", send, interval_s=0.01,
                      reconnect_initial_s=0.01, reconnect_max_s=0.04)
    agent.run(polls=4)
    assert (agent.polls, agent.samples_sent, sent) == (4, 0, [])
    polls = agent.metrics.registry.get_sample_value
    assert polls("stacktide_host_agent_polls_total", {"outcome": "error"}) == 4
    assert agent.wait_s() == 0.04
    source.uri = "test:///default"
    assert agent.poll_once() > 0 and agent.wait_s() == 0.01
    assert polls("stacktide_host_agent_polls_total", {"outcome": "ok"}) == 1


class ListSink:
    def __init__(self) -> None:
        self.records: list[SampleRecord] = []

    def __call__(self, records: Sequence[SampleRecord]) -> None:
        self.records.extend(records)


def test_agent_to_receiver_over_udp_with_metrics(tmp_path: Path) -> None:
    expected = write_node(tmp_path / "node.xml", domains=5, disks=1, nics=1)
    sink = ListSink()
    receiver = UdpReceiver(UdpConfig(port=0, flush_interval_s=0.2), sink).start()
    sender = UdpSender(*receiver.address)
    agent = HostAgent(LibvirtSource(f"test://{tmp_path / 'node.xml'}", METERS), "cmp7", sender,
                      interval_s=0.05, max_datagram_bytes=1400)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server, _ = start_http_server(port, "127.0.0.1", registry=agent.metrics.registry)
    try:
        agent.run(polls=3)
        per_poll = agent.samples_sent // 3
        deadline = time.monotonic() + 10
        while sum(r.count for r in sink.records) < 3 * per_poll and time.monotonic() < deadline:
            time.sleep(0.05)
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        receiver.stop()
        sender.close()
    assert per_poll == 5 * (len(PER_DOMAIN) + len(PER_DISK) + len(PER_NIC))
    assert sum(r.count for r in sink.records) == 3 * per_poll  # loopback, far below the buffer
    assert {r.host for r in sink.records} == {"cmp7"}
    assert {r.instance_id for r in sink.records} == set(expected.values())
    disk = next(r for r in sink.records if r.meter == "disk.device.read.bytes")
    assert (disk.unit, disk.kind, disk.device, disk.resource_id) == ("B", "counter", "vda",
                                                                    f"{disk.instance_id}-vda")
    assert 'stacktide_host_agent_polls_total{outcome="ok"} 3.0' in scraped
    assert "stacktide_host_agent_domains 5.0" in scraped


def test_lines_are_what_the_receiver_parses(tmp_path: Path) -> None:
    write_node(tmp_path / "node.xml", domains=2, disks=1, nics=1)
    result = LibvirtSource(f"test://{tmp_path / 'node.xml'}", METERS).poll()
    for line, (info, r) in zip(lines("cmp1", result.readings), result.readings, strict=True):
        parsed = parse_line(line)
        assert (parsed.meter, parsed.value, parsed.meta.instance, parsed.meta.device, parsed.meta.unit) == (
            r.meter.name, r.value, info.instance_id, r.device, r.meter.unit)


def test_host_agent_command(tmp_path: Path) -> None:
    """``stacktide host-agent`` as an operator runs it, against a receiver socket."""
    write_node(tmp_path / "node.xml", domains=3, disks=1, nics=1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(10)
        config = tmp_path / "stacktide.yaml"
        config.write_text(yaml.safe_dump({"host_agent": {
            "uri": f"test://{tmp_path / 'node.xml'}", "host": "cmp9", "udp_port": rx.getsockname()[1],
            "interval_s": 0.1, "meters": str(DEFAULT_CONFIG.parent / "meters.yaml")}}))
        out = subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(config), "host-agent",
                              "--polls", "2"], capture_output=True, text=True, timeout=60, check=True)
        got = []
        rx.settimeout(1)
        try:
            while True:
                got.extend(rx.recv(65535).split(b"\n"))
        except TimeoutError:
            pass
    assert "host=cmp9 polls=2 samples=" in out.stdout
    sent = int(out.stdout.split("samples=")[1].split()[0])
    assert len(got) == sent == 2 * 3 * (len(PER_DOMAIN) + len(PER_DISK) + len(PER_NIC))
    assert {parse_line(line).meta.host for line in got} == {"cmp9"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"host_agent": {"target": "tcp"}}))
    res = subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(bad), "host-agent"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "host_agent.target: expected one of udp, kafka" in res.stderr
