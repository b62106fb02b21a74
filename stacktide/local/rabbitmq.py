"""A private RabbitMQ node, run from Debian's ``rabbitmq-server`` package.

The node is started from ``/usr/lib/rabbitmq/bin/rabbitmq-server`` directly (the
``/usr/sbin`` wrapper switches to the ``rabbitmq`` user and the system's data dir),
with every path and port pointed into our state dir, so it never touches a system
RabbitMQ and several stacks can run side by side. Its node name carries the AMQP
port (``stacktide-<port>@localhost``); its Erlang distribution port is port + 20000.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from stacktide.config import Config
from stacktide.errors import ServiceError
from stacktide.local import process

log = logging.getLogger(__name__)

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
START_TIMEOUT_S = 60.0
NAME = "rabbitmq"


def home(config: Config) -> Path:
    return config.local.state_dir / "rabbitmq"


def pidfile(config: Config) -> Path:
    return home(config) / "pid"


def log_dir(config: Config) -> Path:
    return home(config) / "log"


def dist_port(config: Config) -> int:
    return config.local.rabbitmq_port + 20000


def running_pid(config: Config) -> int | None:
    """The pid of the node *we* started for this state dir, if it is still running."""
    # Erlang puts HOME on the emulator's command line: "-home <dir> --".
    return process.owned_pid(pidfile(config), f"-home {home(config)} ")


def ensure_installed() -> None:
    """Install Debian's rabbitmq-server when it is missing (as root, or through sudo -n)."""
    if SERVER.exists():
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    commands = [
        [*sudo, "apt-get", "update"],
        [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
         "rabbitmq-server"],
    ]
    for command in commands:
        log.info("installing RabbitMQ: %s", " ".join(command))
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:
            done = subprocess.CompletedProcess(command, 127, "", str(exc))
        if done.returncode != 0:
            raise ServiceError(
                f"{SERVER} is missing and installing it failed ({' '.join(command)}: "
                f"exit {done.returncode}: {done.stderr.strip()[-300:]}); run as root: "
                "apt-get update && apt-get install -y rabbitmq-server"
            )


def start(config: Config) -> int:
    """Start the node unless ours already runs; return its pid once it answers AMQP."""
    pid = running_pid(config)
    port = config.local.rabbitmq_port
    if pid is not None:
        log.info("RabbitMQ already running pid=%d port=%d", pid, port)
        _wait_ready(config, pid)
        return pid
    if dist_port(config) > 65535:
        raise ServiceError(f"RabbitMQ: local.rabbitmq_port {port} leaves no room for its Erlang "
                           f"distribution port (port + 20000); choose a port below 45536")
    process.require_free({"AMQP port": port, "Erlang distribution port": dist_port(config)},
                         "RabbitMQ")
    ensure_installed()
    root = home(config)
    for folder in (root / "mnesia", log_dir(config)):
        folder.mkdir(parents=True, exist_ok=True)
    (root / "enabled_plugins").write_text("[].\n", encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "RABBITMQ_NODENAME": f"stacktide-{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port(config)),
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
        "RABBITMQ_LOG_BASE": str(log_dir(config)),
        "RABBITMQ_PID_FILE": str(pidfile(config)),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
    }
    log.info("starting RabbitMQ port=%d state=%s", port, root)
    done = subprocess.run([str(SERVER), "-detached"], env=env, cwd=root, capture_output=True,
                          text=True, timeout=START_TIMEOUT_S, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-500:]
        raise ServiceError(f"RabbitMQ failed to start (exit {done.returncode}): {output}; "
                           f"logs in {log_dir(config)}")
    if not process.wait_for(lambda: running_pid(config) is not None, START_TIMEOUT_S):
        raise ServiceError(f"RabbitMQ did not come up within {START_TIMEOUT_S:.0f} s "
                           f"(no live process in {pidfile(config)}); see {log_dir(config)}")
    pid = running_pid(config)
    assert pid is not None
    _wait_ready(config, pid)
    log.info("RabbitMQ ready pid=%d port=%d", pid, port)
    return pid


def _wait_ready(config: Config, pid: int) -> None:
    """Wait until an AMQP login succeeds: an open port alone is not a booted broker."""
    import pika
    import pika.exceptions

    params = pika.ConnectionParameters(
        "127.0.0.1", config.local.rabbitmq_port,
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=2, blocked_connection_timeout=2,
    )

    def answers() -> bool:
        if not process.alive(pid):
            raise ServiceError(f"RabbitMQ pid {pid} exited during start-up; see {log_dir(config)}")
        if not process.port_open(config.local.rabbitmq_port):
            return False
        try:
            pika.BlockingConnection(params).close()
        except pika.exceptions.AMQPError:
            return False
        return True

    if not process.wait_for(answers, START_TIMEOUT_S, interval_s=0.5):
        raise ServiceError(f"RabbitMQ on 127.0.0.1:{config.local.rabbitmq_port} did not accept an "
                           f"AMQP login within {START_TIMEOUT_S:.0f} s; see {log_dir(config)}")


def stop(config: Config) -> bool:
    """Stop the node we started (True), or do nothing when none of ours runs (False)."""
    pid = running_pid(config)
    if pid is None:
        return False
    process.stop(pid, "RabbitMQ")
    pidfile(config).unlink(missing_ok=True)
    return True


def uninstalled_hint() -> str | None:
    """Why RabbitMQ cannot run here, if that is already known (for status output)."""
    if SERVER.exists():
        return None
    return f"{SERVER} missing ('stacktide local up' installs it)" if shutil.which("apt-get") else (
        f"{SERVER} missing and no apt-get: install rabbitmq-server by hand")


CTL = SERVER.parent / "rabbitmqctl"


def ctl(config: Config, *args: str, timeout_s: float = 60.0) -> str:
    """Run ``rabbitmqctl`` against our node: same node name, and HOME for its Erlang cookie."""
    port = config.local.rabbitmq_port
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home(config)),
        "RABBITMQ_NODENAME": f"stacktide-{port}@localhost",
        "RABBITMQ_DIST_PORT": str(dist_port(config)),
    }
    command = [str(CTL), "--node", env["RABBITMQ_NODENAME"], *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    if done.returncode != 0:
        raise ServiceError(f"rabbitmqctl {args[0]} failed (exit {done.returncode}): "
                           f"{(done.stdout + done.stderr).strip()[-300:]}")
    return done.stdout


def add_vhost(config: Config, name: str, user: str = "guest") -> None:
    """Create virtual host *name* (a cell, in tests) and give *user* every permission on it."""
    ctl(config, "add_vhost", name)
    ctl(config, "set_permissions", "-p", name, user, ".*", ".*", ".*")


def delete_vhost(config: Config, name: str) -> None:
    """Delete *name* with its queues; the broker closes every connection to it."""
    ctl(config, "delete_vhost", name)


def add_user(config: Config, name: str, password: str, vhosts: tuple[str, ...] = ("/",)) -> None:
    """Create a user with full permissions on *vhosts* (for tests of credentials in logs)."""
    ctl(config, "add_user", name, password)
    for vhost in vhosts:
        ctl(config, "set_permissions", "-p", vhost, name, ".*", ".*", ".*")


def restart(config: Config) -> int:
    """Stop the node (SIGTERM, clean) and start it again on the same data; returns the new pid."""
    stop(config)
    return start(config)
