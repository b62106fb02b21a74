"""The jobs as a ``flink run -py`` program: the entry module of the plain Flink CLI.

    flink run -m HOST:8081 -d -py jobs/main.py -pyfs stacktide,jobs -pyexec PYTHON \\
        [-s SAVEPOINT] -- --config /etc/stacktide/stacktide.yaml

``flink run`` starts this file with ``-pyclientexec`` (or ``python``), the Flink options of its
flags already in the context (target cluster, ``-pyfs``, ``-pyexec``, ``-s``); this builds the
same job graph as ``stacktide jobs run`` and ``jobs submit`` (:func:`jobs.command.build_jobs`)
and executes it, leaving those options as the CLI set them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

# Set by the flink CLI's flags: the program must not override them with its local defaults.
CLI_OPTIONS = ("python.executable", "python.client.executable")


def main(argv: Sequence[str] | None = None) -> int:
    from jobs.command import JOB_NAME, build_jobs
    from jobs.environment import submit
    from stacktide.config import load_config

    parser = argparse.ArgumentParser(prog="jobs/main.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="the stacktide YAML file (default: STACKTIDE_CONFIG, "
                                         "else conf/stacktide.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = load_config(args.config)
    env = build_jobs(config, bounded=False, restore=None,
                     flink_options=dict.fromkeys(CLI_OPTIONS))
    client = submit(env, JOB_NAME)
    print(f"submitted {JOB_NAME}: job {client.get_job_id()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
