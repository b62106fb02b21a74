"""One libvirt poll in bulk vs the per-domain, per-meter calls of a Ceilometer-style inspector.

Part 1, a real libvirtd with the QEMU driver (a private session daemon, ``host_agent.local_libvirtd``)
running ``--domains`` tiny domains (no OS, TCG): per poll, the CPU seconds of this process and of
libvirtd (``/proc/<pid>/stat``) and the wall time of

- bulk: ``LibvirtSource.poll()``, what the agent does (one ``getAllDomainStats`` + the mapping);
- per-domain: for every domain, its XML (for disks and NICs, as an inspector re-reads it), then one
  libvirt call per meter (and per device) it reports: ``info`` for cpu, vcpus and power.state,
  ``memoryStats`` per memory meter, ``blockStats``/``blockInfo`` per disk meter,
  ``interfaceStats`` per NIC meter.

Both alternate ``--repeat`` times (``--polls`` polls each); medians and ratios are printed.

Part 2, libvirt's test driver (in process, no RPC) with node files of 10 … 1,000 domains:
per-domain calls' CPU per poll and per domain, next to the agent's poll (which on this driver
falls back to per-domain calls for everything but state, so it is no bulk proof).

    .venv/bin/python bench/bench_host_agent.py [--domains 20] [--repeat 5] [--polls 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import libvirt

from host_agent.libvirt_source import LibvirtSource
from host_agent.local_libvirtd import SessionLibvirtd
from host_agent.meters import MeterMap, load_meters
from stacktide.config import DEFAULT_CONFIG

TICK = os.sysconf("SC_CLK_TCK")
METER_CALLS = {  # meter group -> the per-domain call an inspector makes for one of its meters
    "cpu": "info", "vcpu": "info", "state": "info", "balloon": "memoryStats",
}


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def per_domain_poll(conn: libvirt.virConnect, meters: MeterMap) -> int:
    """What a per-domain, per-meter inspector does in one poll; returns the values read."""
    values = 0
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        root = ET.fromstring(dom.XMLDesc(0))  # noqa: S314 - libvirtd's own XML
        disks = [t.get("dev") for t in root.iterfind("devices/disk[@device='disk']/target")]
        nics = [t.get("dev") for t in root.iterfind("devices/interface/target")]
        for m in meters.meters:
            try:
                if m.group in METER_CALLS:
                    getattr(dom, METER_CALLS[m.group])()
                    values += 1
                elif m.group == "block":
                    for d in disks:
                        (dom.blockInfo(d, 0) if m.stat in ("capacity", "allocation", "physical")
                         else dom.blockStats(d))
                        values += 1
                else:
                    for n in nics:
                        dom.interfaceStats(n)
                        values += 1
            except libvirt.libvirtError:
                pass
    return values


def measure(fn: Callable[[], object], polls: int, daemon_pid: int | None) -> tuple[float, float, float]:
    """(this process CPU s, libvirtd CPU s, wall s) per poll, over *polls* polls."""
    d0 = proc_cpu(daemon_pid) if daemon_pid else 0.0
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(polls):
        fn()
    c1, w1 = time.process_time(), time.perf_counter()
    d1 = proc_cpu(daemon_pid) if daemon_pid else 0.0
    return (c1 - c0) / polls, (d1 - d0) / polls, (w1 - w0) / polls


def qemu_part(meters: MeterMap, domains: int, repeat: int, polls: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="stacktide-bench-libvirtd-"))
    daemon = SessionLibvirtd(root).start()
    try:
        started = time.monotonic()
        for i in range(domains):
            daemon.create(f"bench{i}", str(uuid.uuid4()), memory_mib=16)
        print(f"QEMU driver: {domains} tiny domains started in {time.monotonic() - started:.1f} s; "
              f"{os.cpu_count()} CPUs")
        assert daemon.proc is not None
        pid = daemon.proc.pid
        source = LibvirtSource(daemon.uri, meters)
        conn = libvirt.openReadOnly(daemon.uri)
        first = source.poll()
        print(f"bulk poll: {first.domains} domains, {len(first.readings)} samples, "
              f"{first.fallback_calls} fallback calls; per-domain poll: {per_domain_poll(conn, meters)} "
              "values read")
        rows: dict[str, list[tuple[float, float, float]]] = {"bulk": [], "per-domain": []}
        for _ in range(repeat):
            rows["bulk"].append(measure(source.poll, polls, pid))
            rows["per-domain"].append(measure(lambda: per_domain_poll(conn, meters), polls, pid))
        med = {k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in rows.items()}
        print("               agent CPU ms  libvirtd CPU ms  total CPU ms   wall ms   (medians per poll)")
        for k, (c, d, w) in med.items():
            print(f"  {k:<12} {c * 1e3:>10.2f} {d * 1e3:>15.2f} {(c + d) * 1e3:>13.2f} {w * 1e3:>9.2f}")
        b, p = med["bulk"], med["per-domain"]
        print(f"  per-domain / bulk: total CPU {(p[0] + p[1]) / (b[0] + b[1]):.1f}x, agent CPU "
              f"{p[0] / b[0]:.1f}x, libvirtd CPU {p[1] / max(b[1], 1e-9):.1f}x, wall {p[2] / b[2]:.1f}x")
        conn.close()
        source.close()
    finally:
        daemon.close()
        shutil.rmtree(root, ignore_errors=True)


def test_driver_part(meters: MeterMap, sizes: list[int], polls: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' node-file writer
    from tests.host_agent.domains import write_node

    folder = Path(tempfile.mkdtemp(prefix="stacktide-bench-node-"))
    print("test driver (in process): domains, per-domain calls CPU ms per poll and per domain; "
          "agent poll (fallback) the same")
    try:
        for n in sizes:
            write_node(folder / f"node{n}.xml", domains=n, disks=1, nics=1)
            uri = f"test://{folder / f'node{n}.xml'}"
            conn = libvirt.openReadOnly(uri)
            source = LibvirtSource(uri, meters)
            source.poll()
            pd = measure(lambda: per_domain_poll(conn, meters), polls, None)  # noqa: B023
            ag = measure(source.poll, polls, None)
            print(f"  {n:>5} domains: per-domain {pd[0] * 1e3:>8.1f} ms/poll {pd[0] * 1e6 / n:>7.1f} "
                  f"us/domain; agent {ag[0] * 1e3:>8.1f} ms/poll {ag[0] * 1e6 / n:>7.1f} us/domain")
            conn.close()
            source.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--polls", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 300, 1000])
    parser.add_argument("--skip-qemu", action="store_true")
    args = parser.parse_args()
    meters = load_meters(DEFAULT_CONFIG.parent / "meters.yaml")
    if not args.skip_qemu:
        qemu_part(meters, args.domains, args.repeat, args.polls)
    test_driver_part(meters, args.sizes, args.polls)


if __name__ == "__main__":
    main()
