"""Notifications that reach the instance job further behind its watermark than the allowed
lateness are skipped, counted and logged, and the usage check's digest names that cause.

Every notification of one short-lived instance is written to the topic after a day and more
of everybody else's, as a producer that reorders its retries could write them. A streaming run
reads the others first, until its watermark is more than a day past that instance (its usage
rows say so), then those: it must skip each one and say so in its log (instance, event,
times). Stopped with a savepoint and finished by a bounded run, the usage check must fail
with a digest that names the instance, its missing periods, its events never stored, the
skipped events and the records Kafka holds out of the order they were sent in.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jobs.command import caught_up, end_offsets, run_jobs
from jobs.lifecycle import load_rules, observe, to_us
from stacktide.catalog import load_catalog
from stacktide.config import Config
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from tests.helpers import (
    check_usage,
    envelopes,
    jobs_running,
    produce,
    setup,
    state_events,
    stop_jobs,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.stack

HOUR = 3_600_000_000


@pytest.mark.parametrize("operator", ["jvm", "python"])
def test_events_behind_the_watermark_are_skipped_logged_and_named(stack: Config, tmp_path: Path,
                                                                   operator: str) -> None:
    traffic = generate(Params(seed=3, instances=16, hours=40), "legacy", Delivery(3))
    items = envelopes(traffic)
    start = min(to_us(e.generated) or 0 for e in items)
    last: dict[str, int] = {}
    for e in items:
        last[e.instance_id] = max(last.get(e.instance_id, 0), to_us(e.generated) or 0)
    victim = min(last, key=last.__getitem__)  # the instance whose story ends first
    assert last[victim] < start + 12 * HOUR  # more than the lateness (24 h) before the end
    theirs = [e for e in items if e.instance_id == victim]
    config = setup(stack, f"late{operator}", settle_hours=1, state_dir=tmp_path / "state")
    config = dataclasses.replace(config, jobs=dataclasses.replace(
        config.jobs, instance_operator=operator))
    produce(config, [e for e in items if e.instance_id != victim])
    log = tmp_path / "jobs.log"
    with jobs_running(write_config(config, tmp_path / "late.yaml"), log) as job:
        wait_for(lambda: newest_period(config) >= start + 30 * HOUR, job, log, 300)
        produce(config, theirs)
        ends = end_offsets(config)
        wait_for(lambda: caught_up(config, ends), job, log, 300)
        stop_jobs(job, log)
    assert run_jobs(config, bounded=True)  # resumes from the savepoint and ends the usage

    with pytest.raises(AssertionError) as failed:
        check_usage(config, traffic, items, logs=(log,))
    digest = str(failed.value).split("\ndigest:\n", 1)[1].splitlines()
    periods = sum(len(i["usage"]) for i in traffic.truth["instances"] if i["instance_id"] == victim)
    assert digest[0] == (f"usage differs for 1 instance(s), first {victim}: {periods} periods "
                         "missing, 0 extra, 0 wrong") and periods > 0
    assert digest[1] == f"its instance_events stored 0 of {len(state_events(theirs))}"
    assert digest[2].startswith("instance_events: ") and "0 referenced by no snapshot" in digest[2]
    rules = load_rules()
    observed = [e for e in theirs if observe(e, rules) is not None]  # what the job looks at
    logged = int(digest[3].split(": ")[1].split(";")[0])
    assert logged == min(len(observed), 20) > 0, digest  # a subtask's first 20, one by one
    assert f"of instance {theirs[0].cell}/{victim} at " in digest[3]
    behind, hours = digest[4].removeprefix("topic records behind one sent after them: ").split(
        " (up to ")
    assert int(behind) == len(theirs) and float(hours.removesuffix(" h)")) > 24


def newest_period(config: Config) -> int:
    """The start (µs) of the newest usage period the job wrote: its watermark passed its end."""
    ident = f"{config.iceberg.namespace}.instance_usage"
    catalog = load_catalog(config.iceberg)
    if not catalog.table_exists(ident):
        return 0
    starts = catalog.load_table(ident).scan(selected_fields=("period_start",)).to_arrow()
    return max((to_us(t.isoformat()) or 0 for t in starts.column("period_start").to_pylist()),
               default=0)
