"""oslo.messaging transport URLs, parsed the way operators write them in nova.conf.

A cell is configured with the same ``transport_url`` its services use, e.g.
``rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost?ssl=1``. The password
is kept in a :class:`Secret` so that it cannot reach a log line through ``repr``
or ``str``; :func:`redact` gives the form that may be shown.

TLS (``amqps://`` or ``?ssl=1``) takes oslo's ``[oslo_messaging_rabbit]`` option names
as query parameters of the cell's URL (``ssl_ca_file``, ``ssl_cert_file``,
``ssl_key_file``, ``ssl_version``), since each cell may have its own CA; see
:class:`TLSOptions`.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

_SCHEMES = {"rabbit": False, "amqp": False, "amqps": True}
_DEFAULT_PORT = {False: 5672, True: 5671}


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that never shows itself by accident."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True, slots=True)
class BrokerHost:
    """One RabbitMQ node of a cell (a cluster lists several)."""

    host: str
    port: int
    username: str
    password: Secret


@dataclass(frozen=True, slots=True)
class TransportURL:
    """A parsed oslo.messaging transport URL."""

    scheme: str
    hosts: tuple[BrokerHost, ...]
    virtual_host: str
    tls: bool
    options: tuple[tuple[str, str], ...] = ()
    tls_options: TLSOptions | None = None

    def redacted(self) -> str:
        """The URL with every password replaced, safe for logs and metric labels."""
        hosts = ",".join(
            f"{h.username}:***@{h.host}:{h.port}" if h.username else f"{h.host}:{h.port}"
            for h in self.hosts
        )
        return f"{self.scheme}://{hosts}/{self.virtual_host.lstrip('/')}"


class TransportURLError(ValueError):
    """The URL is not an oslo.messaging RabbitMQ transport URL. Never quotes the password."""


# oslo's ssl_version names (case-insensitive) -> the one TLS version to allow; None: negotiate.
_SSL_VERSIONS: dict[str, ssl.TLSVersion | None] = {
    "tlsv1": ssl.TLSVersion.TLSv1, "tlsv1_1": ssl.TLSVersion.TLSv1_1,
    "tlsv1_2": ssl.TLSVersion.TLSv1_2, "tlsv1_3": ssl.TLSVersion.TLSv1_3,
    "sslv23": None, "tls": None,
}
TLS_QUERY_OPTIONS = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_version")


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """oslo.messaging's TLS options for one cell, checked when the URL is parsed.

    Without ``ssl_ca_file`` the broker's certificate is verified against the
    system's CAs (oslo would not verify at all: billing data deserves better).
    ``ssl_version`` pins one protocol version, as oslo's ``PROTOCOL_TLSv1_2`` did.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    version: str | None = None

    def context(self) -> ssl.SSLContext:
        """A client context that verifies the broker; files are read now, so a bad one stops start-up."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise TransportURLError(f"TLS files of the transport URL cannot be used: {exc}") from exc
        pinned = _SSL_VERSIONS[self.version] if self.version else None
        if pinned is not None:
            context.minimum_version = context.maximum_version = pinned
        return context


def _tls_options(query: dict[str, str], tls: bool) -> TLSOptions | None:
    given = {k: v for k, v in query.items() if k in TLS_QUERY_OPTIONS and v}
    if not tls:
        if given:
            raise TransportURLError(f"{', '.join(sorted(given))} given but TLS is off "
                                    "(use amqps:// or ?ssl=1)")
        return None
    version = given.get("ssl_version", "").lower() or None
    if version is not None and version not in _SSL_VERSIONS:
        raise TransportURLError(f"ssl_version {given['ssl_version']!r} is not one of "
                                f"{', '.join(sorted(_SSL_VERSIONS))}")
    if "ssl_key_file" in given and "ssl_cert_file" not in given:
        raise TransportURLError("ssl_key_file needs ssl_cert_file")
    return TLSOptions(given.get("ssl_ca_file"), given.get("ssl_cert_file"),
                      given.get("ssl_key_file"), version)


_URL = re.compile(r"^(?P<scheme>[a-z0-9+]+)://(?P<netloc>[^/?]*)(?P<path>/[^?]*)?(?:\?(?P<q>.*))?$")


def parse_transport_url(url: str) -> TransportURL:
    """Parse ``rabbit://u:p@h1:5672,u:p@h2/vhost?ssl=1`` (and ``amqp://``, ``amqps://``)."""
    m = _URL.match(url.strip())
    if m is None:
        raise TransportURLError(f"not a transport URL: {redact(url)!r}")
    scheme = m["scheme"].split("+", 1)[0]
    if scheme not in _SCHEMES:
        raise TransportURLError(f"scheme {scheme!r} is not one of {sorted(_SCHEMES)}")
    options = tuple(parse_qsl(m["q"] or "", keep_blank_values=True))
    ssl_opt = dict(options).get("ssl", "").lower() in {"1", "true", "yes", "on"}
    tls = _SCHEMES[scheme] or ssl_opt
    hosts = tuple(_parse_host(part, tls) for part in m["netloc"].split(",") if part)
    if not hosts:
        raise TransportURLError(f"no host in {redact(url)!r}")
    path = m["path"] or "/"
    vhost = unquote(path[1:]) if len(path) > 1 else "/"
    return TransportURL(scheme, hosts, vhost, tls, options, _tls_options(dict(options), tls))


def _parse_host(part: str, tls: bool) -> BrokerHost:
    creds, _, hostport = part.rpartition("@")
    user, _, password = creds.partition(":")
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port_s = rest.lstrip(":")
    else:
        host, _, port_s = hostport.partition(":")
    if not host:
        raise TransportURLError("a host entry has no host name")
    try:
        port = int(port_s) if port_s else _DEFAULT_PORT[tls]
    except ValueError:
        raise TransportURLError(f"port of {host!r} is not a number") from None
    return BrokerHost(host, port, unquote(user), Secret(unquote(password)))


_PASSWORD_IN_URL = re.compile(r"(?P<pre>://|,)(?P<user>[^:/@,]*):[^@/,]*@")


def redact(text: str) -> str:
    """Replace any ``user:password@`` in *text* by ``user:***@``."""
    return _PASSWORD_IN_URL.sub(lambda m: f"{m['pre']}{m['user']}:***@", text)
