"""The few calls of Flink's REST API that stacktide makes: list jobs, a job's state, the
TaskManagers, and stop-with-savepoint (trigger, then poll).

Plain ``urllib`` on purpose: the calls are few and small, they must work against any
JobManager (the local standalone cluster, docker/'s, a production one), and a command that
only stops a job should not need a JVM.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from stacktide.errors import StacktideError

TERMINAL = frozenset({"FINISHED", "CANCELED", "FAILED"})


class FlinkRestError(StacktideError):
    """The JobManager could not be reached, refused a call, or a savepoint failed."""


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: str
    name: str
    state: str


def parse_address(address: str) -> str:
    """``host:port`` or ``http(s)://host:port`` -> the REST base URL; a ValueError names what
    was expected (the caller knows which flag or key it came from)."""
    if address.startswith(("http://", "https://")):
        return address.rstrip("/")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port of a JobManager's REST API, got {address!r}")
    return f"http://{host}:{port}"


class FlinkRest:
    """One JobManager's REST API at *url* (``http://host:port``)."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a JobManager's REST URL is http(s)://host:port, got {url!r}")
        self.url, self.timeout_s = url.rstrip("/"), timeout_s

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is http(s), checked above
            f"{self.url}{path}", data=data, method=method,
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                text = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise FlinkRestError(f"Flink REST {method} {self.url}{path}: HTTP {exc.code}: "
                                 f"{detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FlinkRestError(f"Flink REST {self.url} cannot be reached: {reason}") from None
        return json.loads(text) if text else None

    def answers(self) -> bool:
        try:
            self.call("GET", "/overview")
        except FlinkRestError:
            return False
        return True

    def jobs(self) -> list[JobInfo]:
        """Every job the JobManager knows, running or ended (newest first as Flink lists them)."""
        found = self.call("GET", "/jobs/overview")["jobs"]
        return [JobInfo(j["jid"], j["name"], j["state"]) for j in found]

    def running(self, name: str) -> list[JobInfo]:
        """The jobs called *name* that have not ended."""
        return [j for j in self.jobs() if j.name == name and j.state not in TERMINAL]

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/jobs/{job_id}")
        return result

    def job_state(self, job_id: str) -> str:
        return str(self.job(job_id)["state"])

    def all_tasks_running(self, job_id: str) -> bool:
        """Whether the job runs and every one of its tasks too (a savepoint waits for that)."""
        detail = self.job(job_id)
        return detail["state"] == "RUNNING" and all(
            v["status"] == "RUNNING" for v in detail["vertices"])

    def taskmanagers(self) -> list[str]:
        """The ids of the TaskManagers registered with the JobManager."""
        return [t["id"] for t in self.call("GET", "/taskmanagers")["taskmanagers"]]

    def trigger_stop(self, job_id: str, directory: str | None, *, drain: bool = False) -> str:
        """Ask for stop-with-savepoint into *directory* (a URI or path the JobManager and
        TaskManagers all reach; None: the cluster's default savepoint folder); returns the
        trigger id to poll. *drain*: end event time
        first, which fires every timer (a final stop, not one to upgrade from)."""
        body = {"targetDirectory": directory, "drain": drain, "formatType": "CANONICAL"}
        return str(self.call("POST", f"/jobs/{job_id}/stop", body)["request-id"])

    def savepoint_path(self, job_id: str, trigger: str, timeout_s: float = 600.0) -> str:
        """Poll the savepoint of *trigger* until it completes; its path, or FlinkRestError
        with Flink's reason when it failed."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.call("GET", f"/jobs/{job_id}/savepoints/{trigger}")
            if answer["status"]["id"] == "COMPLETED":
                operation = answer.get("operation") or {}
                if "location" in operation:
                    return str(operation["location"])
                cause = operation.get("failure-cause", {}).get("stack-trace", "")
                raise FlinkRestError(f"savepoint of job {job_id} failed: "
                                     f"{cause.splitlines()[0] if cause else operation}")
            if time.monotonic() > deadline:
                raise FlinkRestError(f"savepoint of job {job_id} not done after {timeout_s:.0f} s")
            time.sleep(0.5)

    def stop_with_savepoint(self, job_id: str, directory: str | None, *, drain: bool = False,
                            timeout_s: float = 600.0) -> str:
        """Stop *job_id* with a savepoint in *directory* and wait for it; the savepoint path.

        Returns once the job has ended too: the savepoint completes before the job leaves
        RUNNING, and a job not yet ended still counts as running (a submission right after
        would be refused)."""
        path = self.savepoint_path(job_id, self.trigger_stop(job_id, directory, drain=drain),
                                   timeout_s)
        self.wait_state(job_id, TERMINAL, timeout_s)
        return path

    def wait_state(self, job_id: str, states: set[str] | frozenset[str],
                   timeout_s: float = 300.0) -> str:
        """Poll until the job is in one of *states*; that state."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.job_state(job_id)
            if state in states:
                return state
            if state in TERMINAL or time.monotonic() > deadline:
                raise FlinkRestError(f"job {job_id} is {state}, waited for {sorted(states)}")
            time.sleep(0.5)
