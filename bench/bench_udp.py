"""How many statsd samples the UDP receiver takes on one core, and what a series costs in memory.

Three measurements, in one run, nothing asserted:

- aggregator: ``Aggregator.add_datagram`` alone over pre-built datagrams (no socket), samples/s;
- receiver: ``connectors.udp.UdpReceiver`` in a child process pinned to one core, fed by this
  process (pinned to another) at rising offered rates for ``--seconds`` each; per rate the
  samples it aggregated per second, its CPU, and the kernel's drop counter of its socket
  (``/proc/net/udp``). The highest rate with no kernel drop and every sample counted is the
  sustained rate;
- memory: tracemalloc's allocated bytes of an aggregator holding 100,000 series.

    .venv/bin/python bench/bench_udp.py [--seconds 5] [--repeat 3] [--lines-per-datagram 20]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import time
import tracemalloc
from collections.abc import Sequence
from multiprocessing.connection import Connection

from connectors.udp import UdpReceiver
from connectors.udp_aggregate import Aggregator
from stacktide.config import UdpConfig
from stacktide.schema import SampleRecord
from stacktide.statsd import encode_line, pack

METERS = ("cpu", "memory.usage", "disk.device.read.bytes", "disk.device.write.bytes",
          "network.incoming.bytes", "network.outgoing.bytes", "vcpus", "power.state")


def datagrams(hosts: int, instances: int, lines_per_datagram: int) -> list[bytes]:
    """One poll of *hosts* x *instances* x the meters, as the agent packs it."""
    lines = [encode_line(m, 123456789 + i, "counter", {"host": f"cmp{h}", "instance": f"vm-{h}-{i}",
                                                     "device": "vda", "unit": "B"})
             for h in range(hosts) for i in range(instances) for m in METERS]
    out: list[bytes] = []
    for start in range(0, len(lines), lines_per_datagram):
        out.append(b"\n".join(lines[start:start + lines_per_datagram]))
    assert list(pack(lines[:lines_per_datagram], 65000)) == out[:1]
    return out


def bench_aggregator(data: list[bytes], repeat: int) -> float:
    rates = []
    lines = sum(d.count(b"\n") + 1 for d in data)
    for _ in range(repeat):
        agg = Aggregator()
        started = time.process_time()
        for _ in range(5):
            for d in data:
                agg.add_datagram(d, 0.0)
        rates.append(5 * lines / (time.process_time() - started))
    return statistics.median(rates)


def _receiver(conn: Connection, core: int) -> None:
    os.sched_setaffinity(0, {core})
    flushed = [0]

    def sink(records: Sequence[SampleRecord]) -> None:
        flushed[0] += len(records)

    receiver = UdpReceiver(UdpConfig(port=0, flush_interval_s=1.0, rcvbuf_bytes=8 * 1024 * 1024), sink)
    receiver.start()
    conn.send(receiver.address)
    conn.recv()  # the sender is done
    seen, deadline = -1, time.monotonic() + 30
    while receiver.aggregator.stats.datagrams != seen and time.monotonic() < deadline:
        seen = receiver.aggregator.stats.datagrams  # the socket still drains: wait for it
        time.sleep(0.3)
    cpu = time.process_time()
    s = receiver.aggregator.stats
    conn.send((s.datagrams, s.lines, s.malformed, receiver.drops(), cpu))
    receiver.stop()


def bench_receiver(data: list[bytes], rate: float, seconds: float,
                   cores: tuple[int, int]) -> dict[str, float]:
    """Offer *rate* samples/s for *seconds*; what arrived, what the kernel dropped, the CPU used."""
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_receiver, args=(child, cores[0]))
    proc.start()
    address = parent.recv()
    os.sched_setaffinity(0, {cores[1]})
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    per = data[0].count(b"\n") + 1
    sent = lines = 0
    started = time.monotonic()
    i = 0
    while (now := time.monotonic()) - started < seconds:
        due = int(rate * (now - started)) - lines
        while due > 0:
            out.sendto(data[i % len(data)], address)
            i += 1
            sent += 1
            lines += per
            due -= per
        time.sleep(0.0005)
    elapsed = time.monotonic() - started
    parent.send("done")
    datagrams, got, malformed, drops, cpu = parent.recv()
    proc.join()
    out.close()
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return {"offered": lines / elapsed, "sent": sent, "received": datagrams, "lines": got,
            "lost": lines - got, "drops": drops, "malformed": malformed, "cpu": cpu,
            "elapsed": elapsed}


def bench_memory(n: int = 100_000) -> int:
    agg = Aggregator(max_series=n + 1)
    lines = [encode_line("cpu", i, "counter",
                         {"host": "cmp1", "instance": f"{i:08d}-0000-0000-0000-000000000000"})
             for i in range(n)]
    data = list(pack(lines, 1400))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for d in data:
        agg.add_datagram(d, 0.0)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(agg) == n
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lines-per-datagram", type=int, default=20)
    parser.add_argument("--rates", type=float, nargs="+",
                        default=[100_000, 200_000, 300_000, 400_000, 500_000])
    args = parser.parse_args()
    data = datagrams(hosts=10, instances=250, lines_per_datagram=args.lines_per_datagram)
    print(f"{len(data)} datagrams of {args.lines_per_datagram} lines, mean "
          f"{sum(map(len, data)) / len(data):.0f} B; {os.cpu_count()} CPUs")
    print(f"aggregator alone: {bench_aggregator(data, args.repeat):,.0f} samples/s (median of "
          f"{args.repeat}, CPU time, one thread)")
    cores = (0, 1 % (os.cpu_count() or 1))
    for rate in args.rates:
        runs = [bench_receiver(data, rate, args.seconds, cores) for _ in range(args.repeat)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        clean = sum(1 for r in runs if r["drops"] == 0 and r["lost"] == 0)
        print(f"offered {med['offered']:>9,.0f} samples/s: "
              f"aggregated {med['lines'] / med['elapsed']:>9,.0f}/s "
              f"({med['received'] / med['elapsed']:,.0f} datagrams/s), kernel drops {med['drops']:,.0f}, "
              f"lost {med['lost']:,.0f}, receiver CPU {med['cpu'] / med['elapsed']:.2f} cores; "
              f"{clean}/{len(runs)} runs without loss")
    used = bench_memory()
    print(f"memory: {used / 1e6:.1f} MB for 100,000 series ({used / 100_000:.0f} B per series, tracemalloc)")


if __name__ == "__main__":
    main()
