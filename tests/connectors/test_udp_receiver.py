"""The UDP receiver on a real loopback socket, flushing into an in-memory sink."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

from connectors.udp import UdpReceiver, socket_drops
from stacktide.config import UdpConfig
from stacktide.schema import SampleRecord
from stacktide.statsd import encode_line, pack


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[SampleRecord]] = []

    def __call__(self, records: Sequence[SampleRecord]) -> None:
        self.batches.append(list(records))


def _wait(cond: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_receiver_aggregates_per_window_and_survives_garbage() -> None:
    sink = ListSink()
    receiver = UdpReceiver(UdpConfig(port=0, flush_interval_s=0.3), sink).start()
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        lines = [encode_line("cpu", 1000 * i, "counter", {"host": "cmp1", "instance": f"vm{i % 10}"})
                 for i in range(200)]
        for datagram in pack(lines, 1400):
            out.sendto(datagram, receiver.address)
        for garbage in (b"", b"\xff\xfe", b"cpu:1|c", b"x" * 9000, b"cpu:1|c|#host:cmp1,instance:vm0\n:::"):
            out.sendto(garbage, receiver.address)
        _wait(lambda: receiver.aggregator.stats.lines >= 204)
        _wait(lambda: sum(len(b) for b in sink.batches) >= 10)
        # The receiver still works after the garbage: a later window gets a later value.
        out.sendto(b"cpu:999999|c|#host:cmp1,instance:vm3", receiver.address)
        _wait(lambda: any(r.last == 999999 for b in sink.batches for r in b))
    finally:
        receiver.stop()
        out.close()
    records = [r for b in sink.batches for r in b]
    first = {r.resource_id: r for r in sink.batches[0]}
    assert sorted(first) == [f"vm{i}" for i in range(10)]
    vm3 = first["vm3"]
    assert (vm3.count, vm3.min, vm3.max, vm3.last) == (20, 3000.0, 193000.0, 193000.0)
    assert vm3.sum == sum(1000.0 * i for i in range(3, 200, 10))
    assert sum(r.count for r in records) == 202  # 200 + the good line after garbage + the late one
    s = receiver.aggregator.stats
    assert (s.malformed, s.reasons) == (4, {"not meter:value|type": 3, "missing tag": 1})
    assert all(r.window_start < r.window_end for r in records)


def test_kernel_drop_counter_is_read_for_the_socket() -> None:
    """A socket nobody reads fills its buffer; the kernel's count of what it then dropped shows."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind(("127.0.0.1", 0))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert socket_drops(sock) == 0
        for _ in range(200):
            out.sendto(b"x" * 1000, sock.getsockname())
        assert socket_drops(sock) > 0
    finally:
        sock.close()
        out.close()
