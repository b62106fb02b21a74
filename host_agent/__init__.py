"""Per-hypervisor sampler reading libvirt in bulk (not provided yet)."""
