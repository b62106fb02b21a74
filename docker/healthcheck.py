#!/usr/bin/python3.11
"""The health checks of the stacktide services of docker/compose.yaml; exit 0 when healthy.

    stacktide-healthcheck url URL                   the URL answers 2xx (bridge /healthz, Flink REST)
    stacktide-healthcheck taskmanager FLINK_REST    the JobManager lists this container's TaskManager
    stacktide-healthcheck job FLINK_REST NAME       a job named NAME is RUNNING on the cluster

Standard library only, and no stacktide import: a probe runs every few seconds and must stay
cheap. A TaskManager registers under its container's host name (docker/entrypoint.sh).
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from typing import Any

TIMEOUT_S = 5.0


def get(url: str) -> Any:
    """The JSON *url* answers (urllib raises on a non-2xx status or no answer)."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (http only)
        body = response.read()
    return json.loads(body) if body.strip() else None


def check(argv: list[str]) -> str | None:
    """None when healthy, else what is wrong."""
    match argv:
        case ["url", url]:
            get(url)
            return None
        case ["taskmanager", rest]:
            me = socket.gethostname()
            ids = [tm["id"] for tm in get(f"{rest}/taskmanagers")["taskmanagers"]]
            return None if me in ids else f"TaskManager {me} not registered (registered: {ids})"
        case ["job", rest, name]:
            states = [j["state"] for j in get(f"{rest}/jobs/overview")["jobs"] if j["name"] == name]
            return None if "RUNNING" in states else f"job {name}: no RUNNING run (runs: {states})"
    return "usage: stacktide-healthcheck url URL | taskmanager FLINK_REST | job FLINK_REST NAME"


def main() -> int:
    try:
        problem = check(sys.argv[1:])
    except (OSError, ValueError, KeyError, TypeError) as exc:  # no answer, or not Flink's JSON
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
