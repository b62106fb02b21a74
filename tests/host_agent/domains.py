"""Domains for libvirt's test driver, written by the tests: node files and transient domains."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"


def domain_xml(name: str, dom_uuid: str, disks: int, nics: int, instance: str | None = None) -> str:
    """A test-driver domain with *disks* disks, *nics* interfaces and a virtio balloon."""
    meta = (f"<metadata><nova:instance xmlns:nova='{NOVA_NS}' uuid='{instance}'>"
            f"<nova:name>{name}</nova:name></nova:instance></metadata>") if instance else ""
    disk_xml = "".join(f"<disk type='file' device='disk'><source file='/guest/{name}-{i}'/>"
                       f"<target dev='vd{chr(97 + i)}' bus='virtio'/></disk>" for i in range(disks))
    nic_xml = "".join(f"<interface type='network'><source network='default'/>"
                      f"<target dev='{name}-tap{i}'/></interface>" for i in range(nics))
    return (f"<domain type='test'><name>{name}</name><uuid>{dom_uuid}</uuid>"
            f"<memory unit='MiB'>512</memory><vcpu>2</vcpu>{meta}"
            f"<os><type arch='x86_64'>hvm</type></os><devices>{disk_xml}{nic_xml}"
            f"<memballoon model='virtio'/></devices></domain>")


def write_node(path: Path, domains: int, disks: int = 2, nics: int = 2,
               nova_every: int = 2, instances: Sequence[str] = ()) -> dict[str, str]:
    """A test-driver node file with *domains* running domains; returns domain uuid -> instance id
    (every *nova_every*-th domain carries nova metadata naming another instance uuid: the next
    of *instances*, a random one once they run out)."""
    expected: dict[str, str] = {}
    parts = []
    names = iter(instances)
    for i in range(domains):
        dom_uuid = str(uuid.UUID(int=i + 1))
        instance = (next(names, None) or str(uuid.uuid4())) if nova_every and i % nova_every == 0 else None
        expected[dom_uuid] = instance or dom_uuid
        parts.append(domain_xml(f"dom{i}", dom_uuid, disks, nics, instance))
    path.write_text("<node>" + "".join(parts) + "</node>")
    return expected
