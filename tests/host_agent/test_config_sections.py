"""The ``udp`` and ``host_agent`` config sections: defaults, paths, and errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacktide.config import DEFAULT_CONFIG, load_config
from stacktide.errors import ConfigError


def test_shipped_sections(tmp_path: Path) -> None:
    config = load_config(DEFAULT_CONFIG)
    assert (config.udp.port, config.udp.flush_interval_s) == (0, 10.0)
    assert config.host_agent.meters == str(DEFAULT_CONFIG.parent / "meters.yaml")
    (tmp_path / "m.yaml").write_text("")
    own = tmp_path / "s.yaml"
    own.write_text("host_agent: {meters: m.yaml, uri: 'xen:///system', target: kafka}\nudp: {port: 8125}\n")
    config = load_config(own)
    assert (config.host_agent.meters, config.host_agent.uri) == (str(tmp_path / "m.yaml"), "xen:///system")
    assert config.udp.port == 8125


@pytest.mark.parametrize(("text", "key", "expected"), [
    ("udp: {port: 70000}", "udp.port", "a port number"),
    ("udp: {flush_interval_s: 0}", "udp.flush_interval_s", "a positive number"),
    ("udp: {flush: 1}", "udp.flush", "one of the known keys"),
    ("host_agent: {target: tcp}", "host_agent.target", "one of udp, kafka"),
    ("host_agent: {interval_s: 0}", "host_agent.interval_s", "a positive number"),
    ("host_agent: {udp_port: -1}", "host_agent.udp_port", "a non-negative integer"),
    ("host_agent: {uri: ''}", "host_agent.uri", "a libvirt URI"),
    ("host_agent: {reconnect_initial_s: 5, reconnect_max_s: 1}", "host_agent.reconnect_max_s", "at least"),
])
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = tmp_path / "stacktide.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert (err.value.file, err.value.key) == (str(path), key)
    assert err.value.expected.startswith(expected)
