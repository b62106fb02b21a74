"""A private libvirtd with the QEMU driver, for the tests and benchmarks of the host agent.

It runs in session mode (``qemu:///session`` over its own socket) under an unprivileged
user (``nobody`` when started as root), with every directory under one root folder, so it
needs no system configuration, never meets a system libvirtd and is removed with its folder.
Domains are tiny and have no operating system: a blank raw disk, a user-mode NIC and a
virtio balloon, run by QEMU's software emulation (TCG, no KVM). That is enough for libvirt
to report CPU, balloon, vCPU, block and state stats of real QEMU processes.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

from stacktide.errors import ServiceError

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <metadata>{metadata}</metadata>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{disk}'/><target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'><model type='virtio'/></interface>
    <memballoon model='virtio'><stats period='1'/></memballoon>
  </devices>
</domain>
"""

NOVA_METADATA = ("<nova:instance xmlns:nova='http://openstack.org/xmlns/libvirt/nova/1.1' uuid='{instance}'>"
                 "<nova:name>{name}</nova:name></nova:instance>")


class SessionLibvirtd:
    """Start, restart and stop one private libvirtd; create and destroy tiny domains on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.user = "nobody" if os.geteuid() == 0 else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.socket = root / "run" / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///session?socket={self.socket}"

    def _env(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.root / "home"),
                "XDG_RUNTIME_DIR": str(self.root / "run"), "XDG_CONFIG_HOME": str(self.root / "config"),
                "XDG_CACHE_HOME": str(self.root / "cache"), "XDG_DATA_HOME": str(self.root / "data")}

    def start(self, timeout_s: float = 30.0) -> SessionLibvirtd:
        for sub in ("home", "run", "config", "cache", "data", "disks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        command = ["libvirtd"]
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)
            command = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
                       *command]
        self.socket.unlink(missing_ok=True)
        log = (self.root / "libvirtd.log").open("ab")
        self.proc = subprocess.Popen(command, env=self._env(), stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"libvirtd did not start (see {self.root / 'libvirtd.log'})")
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop libvirtd only (running domains stay, as with a daemon restart)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def disk(self, name: str, size: int = 1 << 20) -> Path:
        path = self.root / "disks" / f"{name}.img"
        with path.open("wb") as f:
            f.truncate(size)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def create(self, name: str, uuid: str, memory_mib: int = 32, instance: str | None = None) -> None:
        """Start a transient domain; *instance* puts nova metadata naming that instance uuid."""
        import libvirt

        metadata = NOVA_METADATA.format(instance=instance, name=name) if instance else ""
        xml = DOMAIN_XML.format(name=name, uuid=uuid, memory_mib=memory_mib, disk=self.disk(name),
                                metadata=metadata)
        conn = libvirt.open(self.uri)
        try:
            conn.createXML(xml, 0)
        finally:
            conn.close()

    def destroy_all(self) -> None:
        """Destroy every domain (their QEMU processes end with them)."""
        import libvirt

        conn = libvirt.open(self.uri)
        try:
            for dom in conn.listAllDomains():
                if dom.isActive():
                    dom.destroy()
        finally:
            conn.close()

    def close(self) -> None:
        """Destroy the domains, then stop the daemon: nothing of it keeps running."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.destroy_all()
            finally:
                self.stop()
