"""Throughput of connectors.wire.parse over the corpus, 1.0 and 2.0 bodies.

Every corpus sample, repeated to about 50,000 messages, parsed 5 times per format;
prints the median messages per second. No assertions: run it, read it.

    .venv/bin/python bench/bench_wire.py [--messages 50000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from connectors.wire import parse
from stacktide.corpus import iter_samples


def bench(envelope: str, messages: int, runs: int) -> tuple[float, int]:
    samples = list(iter_samples(envelope=envelope))
    work = [(s.body, s.exchange, s.routing_key) for s in samples]
    work = (work * (messages // len(work) + 1))[:messages]
    size = sum(len(b) for b, _, _ in work) // len(work)
    received = datetime.now(UTC)
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for body, exchange, routing_key in work:
            parse(body, cell="bench", exchange=exchange, routing_key=routing_key,
                  received=received)
        rates.append(len(work) / (time.perf_counter() - start))
    return statistics.median(rates), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for envelope in ("1.0", "2.0"):
        rate, size = bench(envelope, args.messages, args.runs)
        print(f"envelope={envelope} messages={args.messages} mean_body={size}B "
              f"median={rate:,.0f} msg/s over {args.runs} runs")


if __name__ == "__main__":
    main()
