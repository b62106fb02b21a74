"""How the messages reach the consumer: reordered, some hours late, some twice. All seeded.

Real paths reorder (several publishers, several queues, a bridge with many partitions),
delay (a compute host whose notifications queue up while RabbitMQ is cut off, then flush)
and redeliver (an unacked message after a consumer restart: same body, same message_id).
:func:`deliver` applies all three to a time-ordered list; what a consumer does with the
result must not depend on it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
SECOND = 1_000_000
HOUR = 3600 * SECOND


@dataclass(frozen=True, slots=True)
class Delivery:
    seed: int = 0
    reorder_window_s: float = 0.0  # any two messages this close may swap
    delay_fraction: float = 0.0  # this share arrives hours late ...
    delay_hours: tuple[float, float] = (1.0, 6.0)  # ... by a uniform delay in this range
    duplicate_fraction: float = 0.0  # this share arrives a second time ...
    duplicate_window_s: float = 600.0  # ... within this long after the first

    def __post_init__(self) -> None:
        for name in ("delay_fraction", "duplicate_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.reorder_window_s < 0 or self.duplicate_window_s < 0 or not (
                0 <= self.delay_hours[0] <= self.delay_hours[1]):
            raise ValueError("windows must be non-negative and delay_hours a (low, high) range")


def deliver(items: Sequence[T], times: Sequence[int], d: Delivery) -> list[tuple[int, T]]:
    """(delivery time, item) in delivery order; *times* are the items' own times (µs)."""
    rng = random.Random(f"{d.seed}:delivery")
    window, dup = int(d.reorder_window_s * SECOND), int(d.duplicate_window_s * SECOND)
    keyed: list[tuple[int, int, T]] = []
    for i, (item, at) in enumerate(zip(items, times, strict=True)):
        when = at + (rng.randrange(window) if window else 0)
        if rng.random() < d.delay_fraction:
            when += int(rng.uniform(*d.delay_hours) * HOUR)
        keyed.append((when, i, item))
        if rng.random() < d.duplicate_fraction:
            keyed.append((when + (rng.randrange(dup) if dup else 0) + 1, i, item))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [(when, item) for when, _, item in keyed]
