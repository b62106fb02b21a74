"""The JVM instance operator's state across its encodings: a savepoint taken by an earlier
build must resume in this one as if this one had written it.

``data/instance_states.json.gz`` holds a small simulated traffic (6 instances, 12 hours,
reordered and repeated deliveries, nova's audit expected) cut in two, and the states of the
live instances after its first part as each earlier encoding wrote them (versions 2 and 3:
pending exists, audited exists, timers and samples among them). Resuming the second part from
those states must give the rows that resuming it from this build's own states gives.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from jobs import lifecycle as lc
from tests.jobs.keyed_driver import Ask, java_harness

DATA = Path(__file__).parent / "data" / "instance_states.json.gz"
CURRENT = 4  # stacktide.lifecycle.Keep.VERSION
EARLIER = ["2", "3"]


@pytest.fixture(scope="module")
def jvm(tmp_path_factory: pytest.TempPathFactory) -> Ask:
    tmp = tmp_path_factory.mktemp("jvm-state-versions")
    (rules := tmp / "rules.json").write_text(json.dumps(lc.rules_document(lc.load_rules())))
    return java_harness(tmp, "LifecycleCheck", [str(rules)])


@pytest.fixture(scope="module")
def saved() -> dict[str, Any]:
    with gzip.open(DATA, "rt") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def versions(states: dict[str, str]) -> set[int]:
    return {base64.b64decode(s)[0] for s in states.values()}


@pytest.mark.parametrize("version", EARLIER)
def test_earlier_states_resume_as_this_builds_own(jvm: Ask, saved: dict[str, Any],
                                                 version: str) -> None:
    common = {"timing": saved["timing"], "base": 0}
    theirs = saved["states"][version]
    mine, = jvm([{**common, "drive": saved["first"], "newest": saved["newest_first"],
                  "dump": True}])
    assert versions(theirs) == {int(version)}
    assert versions(mine["states"]) == {CURRENT}
    assert sorted(mine["states"]) == sorted(theirs)  # the same instances live
    from_mine, from_saved = jvm([{**common, "drive": saved["second"], "newest": saved["newest"],
                                  "restore": states}
                                 for states in (mine["states"], theirs)])
    tables = {table for table, _ in from_saved["rows"]}
    assert {"instance_usage", "usage_audit", "instances"} <= tables
    assert from_saved["rows"] == from_mine["rows"]
    assert (from_saved["late"], from_saved["duplicates"], from_saved["kept"]) == \
        (from_mine["late"], from_mine["duplicates"], from_mine["kept"])


@pytest.mark.parametrize("version", EARLIER)
def test_this_builds_states_are_smaller(jvm: Ask, saved: dict[str, Any], version: str) -> None:
    """Each version packs tighter than the one before (3: message keys and ids; 4: times in
    seconds, names by number, a pending exists as changes from the one before): every state
    the first part leaves is smaller than its bytes in an earlier version."""
    mine, = jvm([{"timing": saved["timing"], "base": 0, "drive": saved["first"],
                  "newest": saved["newest_first"], "dump": True}])
    for key, old in saved["states"][version].items():
        assert len(base64.b64decode(mine["states"][key])) < len(base64.b64decode(old)), key
