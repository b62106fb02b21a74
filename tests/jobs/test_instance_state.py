"""What the keyed instance job keeps per instance, as Flink stores it (pickled)."""

from __future__ import annotations

import pickle

from jobs.instance_state import Keep, event_filter
from jobs.lifecycle import InstanceState, load_rules
from jobs.usage import PERIODS, Book, dumps
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from tests.jobs.test_usage import delivered, run


def test_keep_pickles_through_the_compact_form_and_back() -> None:
    traffic = generate(Params(seed=8, instances=12, hours=30), "both", Delivery(8, 30.0, 0.05))
    obs = delivered(traffic)
    states, _ = run(obs, PERIODS["hour"], lateness=6 * PERIODS["hour"])
    exists = next(o for o in obs if o.effect.audit)
    for state, book in states.values():
        keep = Keep(state, 7, book, {exists.message_id: exists}, {5: (1, 2, 3)}, (2, 99), True,
                    {1000, 2000}, 123)
        data = pickle.dumps(keep)
        back = pickle.loads(data)  # noqa: S301 - our own bytes
        assert [getattr(back, f) for f in Keep.__slots__] == [getattr(keep, f) for f in Keep.__slots__]
        assert dumps(state, book) in data  # stored compact, not as a plain pickle of the objects


def test_an_empty_keep_round_trips() -> None:
    keep = Keep(InstanceState("cell1", "i-1"), 0)
    back = pickle.loads(pickle.dumps(keep))  # noqa: S301 - our own bytes
    assert (back.state, back.book, back.timers) == (keep.state, Book(), set())


def test_only_mapped_event_types_leave_the_jvm() -> None:
    condition = event_filter(load_rules())
    assert "'compute.instance.exists'" in condition and "LIKE" in condition
    assert "'image.upload'" not in condition
