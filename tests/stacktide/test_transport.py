"""Transport URLs as operators write them, and passwords that never show."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from stacktide.transport import TLSOptions, TransportURLError, parse_transport_url, redact


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


def test_tls_options_are_read_from_the_query_with_oslo_names() -> None:
    url = parse_transport_url("amqps://u:pw@h/v?ssl_ca_file=/etc/ca.pem&ssl_cert_file=/c.pem"
                              "&ssl_key_file=/k.pem&ssl_version=TLSv1_2")
    assert url.tls_options == TLSOptions("/etc/ca.pem", "/c.pem", "/k.pem", "tlsv1_2")
    assert parse_transport_url("rabbit://u:pw@h/?ssl=1").tls_options == TLSOptions()
    assert parse_transport_url("rabbit://u:pw@h/").tls_options is None


@pytest.mark.parametrize(("url", "complaint"), [
    ("rabbit://u:pw@h/?ssl_ca_file=/ca.pem", "TLS is off"),
    ("amqps://u:pw@h/?ssl_version=SSLv3", "ssl_version 'SSLv3' is not one of"),
    ("amqps://u:pw@h/?ssl_key_file=/k.pem", "ssl_key_file needs ssl_cert_file"),
])
def test_inconsistent_tls_options_are_refused(url: str, complaint: str) -> None:
    with pytest.raises(TransportURLError, match=complaint) as info:
        parse_transport_url(url)
    assert "pw" not in str(info.value)


def test_tls_context_verifies_and_pins_the_version(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=stacktide-ca", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = TLSOptions(str(cert), str(cert), str(key), "tlsv1_3").context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "stacktide-ca"),),)]
    negotiated = TLSOptions(str(cert), version="sslv23").context()
    assert negotiated.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert TLSOptions().context().verify_mode == ssl.CERT_REQUIRED  # the system's CAs


def test_unreadable_tls_files_stop_start_up(tmp_path: Path) -> None:
    with pytest.raises(TransportURLError, match="cannot be used"):
        TLSOptions(str(tmp_path / "missing-ca.pem")).context()
    (tmp_path / "junk.pem").write_text("not a certificate", encoding="ascii")
    with pytest.raises(TransportURLError, match="cannot be used"):
        TLSOptions(cert_file=str(tmp_path / "junk.pem")).context()
