"""The bridge acks only the prefix of deliveries Kafka has confirmed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.bridge import AckWindow


def test_out_of_order_confirmations_ack_only_the_confirmed_prefix() -> None:
    w = AckWindow()
    for tag in (1, 2, 3, 4):
        w.add(tag)
    w.confirm(2)
    assert w.take_ackable() is None  # 1 is not confirmed: nothing may be acked
    w.confirm(1)
    assert w.take_ackable() == 2
    w.confirm(4)
    assert w.take_ackable() is None
    w.confirm(3)
    assert w.take_ackable() == 4
    assert len(w) == 0


@given(st.permutations(list(range(1, 40))), st.integers(min_value=0, max_value=38))
def test_never_acks_past_an_unconfirmed_tag(order: list[int], hold: int) -> None:
    w = AckWindow()
    for tag in range(1, 40):
        w.add(tag)
    held = order[hold]
    acked = 0
    for tag in order:
        if tag != held:
            w.confirm(tag)
        last = w.take_ackable()
        if last is not None:
            acked = last
    assert acked == held - 1
    assert len(w) == 39 - acked
