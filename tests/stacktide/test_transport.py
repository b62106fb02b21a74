"""Transport URLs as operators write them, and passwords that never show."""

from __future__ import annotations

import pytest

from stacktide.transport import TransportURLError, parse_transport_url, redact


def test_cluster_url_with_vhost_and_tls() -> None:
    url = parse_transport_url("rabbit://nova:s3cret@r1:5672,nova:s3cret@r2/cell%2F1?ssl=1")
    assert [(h.host, h.port) for h in url.hosts] == [("r1", 5672), ("r2", 5671)]
    assert url.virtual_host == "cell/1"
    assert url.tls
    assert url.hosts[0].password.value == "s3cret"
    assert "s3cret" not in repr(url)
    assert "s3cret" not in url.redacted()
    assert url.redacted() == "rabbit://nova:***@r1:5672,nova:***@r2:5671/cell/1"


def test_amqps_defaults_to_tls_port_and_root_vhost() -> None:
    url = parse_transport_url("amqps://u:p@[::1]")
    assert url.tls and url.hosts[0].host == "::1" and url.hosts[0].port == 5671
    assert url.virtual_host == "/"


@pytest.mark.parametrize("bad", ["kafka://h:9092", "rabbit://", "rabbit://u:p@h:port/", "nonsense"])
def test_bad_urls_are_refused_without_the_password(bad: str) -> None:
    with pytest.raises(TransportURLError) as info:
        parse_transport_url(bad)
    assert ":p@" not in str(info.value)


def test_redact_masks_every_host_of_free_text() -> None:
    text = "failed rabbit://a:pw1@h1:5672,b:pw2@h2:5672/ now"
    assert redact(text) == "failed rabbit://a:***@h1:5672,b:***@h2:5672/ now"
