"""oslo.messaging transport URLs, parsed the way operators write them in nova.conf.

A cell is configured with the same ``transport_url`` its services use, e.g.
``rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost?ssl=1``. The password
is kept in a :class:`Secret` so that it cannot reach a log line through ``repr``
or ``str``; :func:`redact` gives the form that may be shown.
"""

from __future__ import annotations

import re
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

    def redacted(self) -> str:
        """The URL with every password replaced, safe for logs and metric labels."""
        hosts = ",".join(
            f"{h.username}:***@{h.host}:{h.port}" if h.username else f"{h.host}:{h.port}"
            for h in self.hosts
        )
        return f"{self.scheme}://{hosts}/{self.virtual_host.lstrip('/')}"


class TransportURLError(ValueError):
    """The URL is not an oslo.messaging RabbitMQ transport URL. Never quotes the password."""


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
    return TransportURL(scheme, hosts, vhost, tls, options)


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
