"""Fixtures of the host agent's tests: a private libvirtd with the QEMU driver running tiny
domains (no OS, software emulation), started once per session and stopped with it."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from host_agent.local_libvirtd import SessionLibvirtd


@dataclass
class QemuHost:
    daemon: SessionLibvirtd
    instances: dict[str, str]  # domain uuid -> instance id the agent must report


@pytest.fixture(scope="session")
def qemu_host() -> Iterator[QemuHost]:
    """A private libvirtd with three tiny QEMU domains; two carry nova metadata. Its folder is
    not under pytest's (private to root) so that the unprivileged daemon can reach it."""
    root = Path(tempfile.mkdtemp(prefix="stacktide-libvirtd-"))
    daemon = SessionLibvirtd(root).start()
    try:
        instances = {}
        for i in range(3):
            dom_uuid, instance = str(uuid.uuid4()), (str(uuid.uuid4()) if i < 2 else None)
            daemon.create(f"tiny{i}", dom_uuid, instance=instance)
            instances[dom_uuid] = instance or dom_uuid
        yield QemuHost(daemon, instances)
    finally:
        daemon.close()
        shutil.rmtree(root, ignore_errors=True)
