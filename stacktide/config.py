"""The stacktide configuration: one YAML file, checked once on load, then frozen.

Every component takes the :class:`Config` it is handed by ``main()``; nothing reads
files or the environment on import. A wrong value stops start-up with a
:class:`~stacktide.errors.ConfigError` naming the file, the key and what was
expected, instead of being logged and skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qs, urlsplit

import yaml

from stacktide.errors import ConfigError
from stacktide.transport import TransportURL, TransportURLError, parse_transport_url

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "conf" / "stacktide.yaml"

DEFAULT_EXCHANGES = ("nova", "glance", "neutron", "cinder", "keystone", "heat", "openstack")
DEFAULT_TOPICS = ("notifications", "versioned_notifications")
PRIORITIES = ("audit", "debug", "info", "warn", "error", "critical", "sample")


@dataclass(frozen=True, slots=True)
class CellConfig:
    """One RabbitMQ deployment (cell or region) the bridge reads."""

    name: str
    transport: TransportURL
    exchanges: tuple[str, ...] = DEFAULT_EXCHANGES
    topics: tuple[str, ...] = DEFAULT_TOPICS
    priorities: tuple[str, ...] = PRIORITIES
    durable_exchanges: bool = False
    """Whether the cell's services declare their exchanges durable (oslo's
    ``amqp_durable_queues = true``): the bridge creates missing ones alike, and the
    simulated services publish alike. Only durable exchanges keep the bridge's bindings
    through a broker restart; a mismatch with the services' is refused by RabbitMQ."""


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "stacktide"
    partitions: int = 4

    def topic(self, name: str) -> str:
        """``notifications`` -> ``stacktide.notifications`` (with the configured prefix)."""
        return f"{self.topic_prefix}.{name}"


# Where the secret key of an object-store warehouse may come from instead of the file, so that
# the file can be shared, versioned or baked into an image without it.
S3_SECRET_ENV = "STACKTIDE_S3_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name, not a secret


@dataclass(frozen=True, slots=True)
class S3Config:
    """How both catalog clients reach an ``s3://`` warehouse (AWS S3, MinIO, Ceph RGW, …).

    ``endpoint`` empty means AWS itself, in ``region``; any other store is named by its URL and
    usually serves buckets by path (``path_style_access``). Without keys each client falls back
    to the AWS SDK's default credentials (environment, profile, instance role) of the machine it
    runs on. The secret key is left out of this object's repr.
    """

    endpoint: str = ""
    region: str = "us-east-1"
    path_style_access: bool = False
    access_key_id: str = ""
    secret_access_key: str = dataclasses.field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class IcebergConfig:
    """Where the tables live. ``uri`` is a JDBC URI, as Flink's JdbcCatalog takes it.

    ``user`` and ``password`` log in to a PostgreSQL catalog. They are keys of their own, never
    part of ``uri``, so the URI can be shown and logged as it is; the password is left out of
    this object's repr. ``s3`` is set exactly when ``warehouse`` is an ``s3://`` location.
    """

    catalog_name: str
    uri: str
    warehouse: str
    namespace: str = "stacktide"
    user: str = ""
    password: str = dataclasses.field(default="", repr=False)
    s3: S3Config | None = None

    @property
    def object_store(self) -> bool:
        """Whether the warehouse is in an object store rather than a file system."""
        return self.s3 is not None


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """How the bridge consumes: its own queues, never the services' shared ones.

    ``prefetch`` bounds the unacked messages per queue; ``max_in_flight`` is the
    cell's window of messages sent to Kafka and not yet confirmed, beyond which
    the bridge stops reading RabbitMQ until Kafka catches up. ``metrics_port`` 0
    turns the ``/metrics`` and ``/healthz`` endpoint off; ``metrics_host`` is
    loopback unless the operator opens it (``0.0.0.0``) for a remote Prometheus.
    """

    queue_prefix: str = "stacktide"
    quorum_queues: bool = False
    prefetch: int = 1000
    max_in_flight: int = 5000
    ack_interval_ms: int = 200
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    lag_interval_s: float = 5.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 5.0
    heartbeat_s: int = 30
    shutdown_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """How the jobs run. ``out_of_order_s``: how far behind the newest notification time the
    watermark trails (later ones are late events, still folded in up to ``dedup_ttl_hours``).
    ``idle_timeout_s``: a Kafka partition silent this long stops holding the watermark back in
    a streaming run (0, the default: never). A partition taken for idle while a backlog is read
    lets the others run ahead of it, and its events then arrive late, some later than the
    allowed lateness: exact usage prefers rows that wait for a silent partition (in a cloud,
    every partition carries traffic) to rows that miss events. Bounded runs never mark one.
    ``python_state_cache``: keys whose state a keyed Python operator (``python`` below)
    keeps decoded between bundles (per subtask); a key missing from it costs a blocking read
    from the JVM, and one evicted a write (bench/README.md measures it). Size it above the
    keys a subtask sees in a watermark's delay: live instances, and open requests.
    ``instance_operator``: where the
    keyed instance job's logic runs: ``jvm`` (the default: jvm/operators'
    ``stacktide.lifecycle``, held equal to the Python functions by differential tests, without
    a Python worker) or ``python`` (jobs/instance_state.py, the definition; bench/README.md
    measures it 12.6 times slower).
    ``request_operator``: the same choice for the request job (jobs/request_state.py, or
    jvm/operators' ``stacktide.requests``). The two implementations keep different state:
    switching needs a fresh start (``--fresh``), not a savepoint."""

    checkpoint_interval_s: float = 10.0
    parallelism: int = 1
    dedup_ttl_hours: float = 24.0
    out_of_order_s: float = 60.0
    idle_timeout_s: float = 0.0
    python_state_cache: int = 20000
    jobmanager: str = ""  # host:port of a Flink cluster's REST API, for jobs submit|stop
    instance_operator: str = "jvm"
    request_operator: str = "jvm"


OPERATORS = ("python", "jvm")


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """The embedded default stack of ``stacktide local``."""

    state_dir: Path
    rabbitmq_port: int = 5672
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    cache_dir: Path = Path("~/.cache/stacktide")
    flink_rest_port: int = 8081  # the standalone Flink cluster of stacktide.local.flink_cluster
    flink_rpc_port: int = 6123


@dataclass(frozen=True, slots=True)
class UsageConfig:
    """Usage windows and nova's audit: the period rows are cut into (also nova's
    ``instance_usage_audit_period``), how long an exists waits for late events before it
    is verified (StackTach's settle time), and whether the deployment runs nova's audit
    (``instance_usage_audit``; only then is an instance without an exists flagged)."""

    period: str = "hour"
    settle_seconds: float = 300.0
    audit_expected: bool = False
    max_silence_hours: float = 168.0  # usage of an instance unheard of longer is held; 0: never

    @property
    def period_us(self) -> int:
        return {"hour": 3_600_000_000, "day": 86_400_000_000}[self.period]


@dataclass(frozen=True, slots=True)
class UdpConfig:
    """The bridge's statsd receiver for host-agent samples (``port`` 0: off). Lines are
    aggregated per ``flush_interval_s`` and produced to ``<prefix>.samples``; ``rcvbuf_bytes``
    is the socket's kernel buffer, what absorbs a burst while a flush runs (the kernel may
    cap it at ``net.core.rmem_max``); ``max_series`` bounds the memory of one window (lines
    of further series are counted as dropped)."""

    host: str = "127.0.0.1"
    port: int = 0
    flush_interval_s: float = 10.0
    rcvbuf_bytes: int = 8 * 1024 * 1024
    max_series: int = 1_000_000


@dataclass(frozen=True, slots=True)
class HostAgentConfig:
    """``stacktide host-agent``: which libvirt to read (read-only), how often, and where to
    send. ``target`` is ``udp`` (statsd lines to ``udp_host:udp_port``) or ``kafka`` (the
    samples topic directly). ``host`` names this hypervisor in the samples (default: the
    machine's host name); ``meters`` is the meter mapping file (relative to the config file)."""

    uri: str = "qemu:///system"
    interval_s: float = 10.0
    host: str = ""
    meters: str = "meters.yaml"
    target: str = "udp"
    udp_host: str = "127.0.0.1"
    udp_port: int = 8125
    max_datagram_bytes: int = 1400
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """``7d``, ``36h``, ``90m``, ``30s``, ``2w`` (one number, one unit) as a timedelta.

    One unit per value keeps a retention setting readable at a glance; a ``ValueError``
    says what was expected, for the config loader and the command line to show.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 7d, 36h, 90m or 30s, got {text!r}")
    return timedelta(seconds=float(match.group(1)) * DURATION_UNITS[match.group(2)])


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration`, in the largest unit that divides it."""
    seconds = value.total_seconds()
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# Unreferenced files younger than this are never orphans, whatever the setting: a running
# job's checkpoint writes data files and manifests that a commit references only later.
MIN_ORPHAN_AGE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class UpkeepConfig:
    """Defaults of ``stacktide tables maintain`` (docs/upkeep.md). Snapshots older than
    ``expire_older_than`` are expired, except the last ``retain_last`` and the newest one the
    Flink sink committed (it reads it when a job restores); compaction rewrites the files of a
    partition smaller than 3/4 of ``target_file_size_mb`` into files of about that size once
    a partition has ``min_input_files`` of them; files under a table's data and metadata
    folders that no snapshot or metadata file references are deleted once older than
    ``orphan_older_than`` (a job restored later than that after a crash would miss files its
    checkpoint wrote, so keep it above any outage the jobs must survive)."""

    expire_older_than: timedelta = timedelta(days=1)
    retain_last: int = 10
    target_file_size_mb: float = 128.0
    min_input_files: int = 2
    orphan_older_than: timedelta = timedelta(days=3)

    @property
    def target_file_size_bytes(self) -> int:
        return int(self.target_file_size_mb * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    cells: tuple[CellConfig, ...]
    kafka: KafkaConfig
    iceberg: IcebergConfig
    bridge: BridgeConfig
    jobs: JobsConfig
    local: LocalConfig
    usage: UsageConfig
    udp: UdpConfig = UdpConfig()
    host_agent: HostAgentConfig = HostAgentConfig()
    upkeep: UpkeepConfig = UpkeepConfig()


T = TypeVar("T")

_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", list: "a list",
               bool: "true or false", dict: "a mapping"}


def _kind(kind: type) -> str:
    return _KIND_NAMES.get(kind, f"a {kind.__name__}")


class _Reader:
    """Typed access to one YAML mapping, with errors that name file and key."""

    def __init__(self, file: str, data: Mapping[str, Any], prefix: str) -> None:
        self.file, self.data, self.prefix = file, data, prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, expected: str, got: object = None) -> ConfigError:
        return ConfigError(self.file, self.key(name), expected, got)

    def get(self, name: str, kind: type[T], default: T | None = None) -> T:
        if name not in self.data or self.data[name] is None:
            if default is None:
                raise self.fail(name, f"{_kind(kind)} (the key is required)")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, _kind(kind), value)
        return value

    def positive(self, name: str, kind: type[T], default: T, zero_ok: bool = False) -> T:
        value = self.get(name, kind, default)
        if value < 0 or (value == 0 and not zero_ok):  # type: ignore[operator]
            word = "non-negative" if zero_ok else "positive"
            raise self.fail(name, f"a {word} {_kind(kind).split()[-1]}", value)
        return value

    def secret(self, name: str) -> str:
        """A password or key: like ``get(name, str, "")``, but a wrong value is never shown."""
        value = self.data.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(name, f"a string (got {type(value).__name__}; quote the value)")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise self.fail(name, f"one of {', '.join(choices)}", value)
        return value

    def names(self, name: str, default: tuple[str, ...], allowed: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(name, list, list(default))
        if not value or not all(isinstance(v, str) and v for v in value):
            raise self.fail(name, "a non-empty list of names", value)
        bad = [v for v in value if allowed and v.lower() not in allowed]
        if bad:
            raise self.fail(name, f"names among {', '.join(allowed)}", bad)
        return tuple(v.lower() if allowed else v for v in value)

    def section(self, name: str) -> _Reader:
        value = self.data.get(name) or {}
        if not isinstance(value, Mapping):
            raise self.fail(name, "a mapping", value)
        return _Reader(self.file, value, f"{self.key(name)}.")

    def unknown(self, known: set[str]) -> None:
        extra = sorted(set(self.data) - known)
        if extra:
            raise self.fail(extra[0], f"one of the known keys {', '.join(sorted(known))}")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and check the YAML file at *path* (``$STACKTIDE_CONFIG``, else conf/stacktide.yaml)."""
    chosen = Path(path or os.environ.get("STACKTIDE_CONFIG") or DEFAULT_CONFIG)
    file = str(chosen)
    try:
        text = chosen.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, "(file)", "a readable YAML file", exc.strerror) from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise ConfigError(file, where, "valid YAML", str(exc).splitlines()[0]) from exc
    if not isinstance(data, Mapping):
        raise ConfigError(file, "(top level)", "a mapping of sections", type(data).__name__)
    return config_from_mapping(data, file, base=chosen.parent)


def config_from_mapping(data: Mapping[str, Any], file: str, base: Path) -> Config:
    """Build a :class:`Config` from already-parsed YAML; relative paths resolve against *base*."""
    top = _Reader(file, data, "")
    top.unknown({"cells", "kafka", "iceberg", "bridge", "jobs", "local", "usage", "udp", "host_agent",
                 "upkeep"})
    local = _local(top.section("local"), base)
    return Config(
        source=file,
        cells=_cells(top),
        kafka=_kafka(top.section("kafka")),
        iceberg=_iceberg(top.section("iceberg"), local),
        bridge=_bridge(top.section("bridge")),
        jobs=_jobs(top.section("jobs")),
        local=local,
        usage=_usage(top.section("usage")),
        udp=_udp(top.section("udp")),
        host_agent=_host_agent(top.section("host_agent"), base),
        upkeep=_upkeep(top.section("upkeep")),
    )


def _jobs(r: _Reader) -> JobsConfig:
    c = _section(r, JobsConfig)
    r.choice("instance_operator", OPERATORS, "jvm")
    r.choice("request_operator", OPERATORS, "jvm")
    if c.jobmanager:
        from stacktide.flink_rest import parse_address

        try:
            parse_address(c.jobmanager)
        except ValueError:
            raise r.fail("jobmanager", "host:port of a JobManager's REST API (empty: none)",
                         c.jobmanager) from None
    return c


def _port(r: _Reader, name: str, value: int) -> int:
    if value > 65535:
        raise r.fail(name, "a port number (0-65535)", value)
    return value


def _udp(r: _Reader) -> UdpConfig:
    c = _section(r, UdpConfig)
    for name in ("flush_interval_s", "rcvbuf_bytes", "max_series"):
        if getattr(c, name) <= 0:
            raise r.fail(name, "a positive number", getattr(c, name))
    _port(r, "port", c.port)
    return c


def _host_agent(r: _Reader, base: Path) -> HostAgentConfig:
    c = _section(r, HostAgentConfig)
    if c.target not in ("udp", "kafka"):
        raise r.fail("target", "one of udp, kafka", c.target)
    for name in ("interval_s", "max_datagram_bytes", "reconnect_initial_s"):
        if getattr(c, name) <= 0:
            raise r.fail(name, "a positive number", getattr(c, name))
    if c.reconnect_max_s < c.reconnect_initial_s:
        raise r.fail("reconnect_max_s", f"at least reconnect_initial_s ({c.reconnect_initial_s})",
                     c.reconnect_max_s)
    _port(r, "udp_port", c.udp_port)
    _port(r, "metrics_port", c.metrics_port)
    if not c.uri:
        raise r.fail("uri", "a libvirt URI such as qemu:///system", c.uri)
    return dataclasses.replace(c, meters=str((base / os.path.expanduser(c.meters)).resolve()))


def _duration(r: _Reader, name: str, default: timedelta, floor: timedelta = timedelta(0)
              ) -> timedelta:
    """A duration key: ``7d``, ``12h``, ``30m``, ``45s`` (a bare number counts seconds)."""
    raw = r.data.get(name)
    if raw is None:
        return default
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = timedelta(seconds=raw)
    elif isinstance(raw, str):
        try:
            value = parse_duration(raw)
        except ValueError:
            raise r.fail(name, "a duration such as 7d, 12h, 30m or 45s", raw) from None
    else:
        raise r.fail(name, "a duration such as 7d, 12h, 30m or 45s", raw)
    if value < floor or value < timedelta(0):
        raise r.fail(name, f"a duration of at least {format_duration(floor)}", raw)
    return value


def _upkeep(r: _Reader) -> UpkeepConfig:
    d = UpkeepConfig()
    r.unknown(set(d.__slots__))
    config = UpkeepConfig(
        expire_older_than=_duration(r, "expire_older_than", d.expire_older_than),
        retain_last=r.positive("retain_last", int, d.retain_last),
        target_file_size_mb=r.positive("target_file_size_mb", float, d.target_file_size_mb),
        min_input_files=r.positive("min_input_files", int, d.min_input_files),
        orphan_older_than=_duration(r, "orphan_older_than", d.orphan_older_than,
                                    floor=MIN_ORPHAN_AGE),
    )
    if config.min_input_files < 2:
        raise r.fail("min_input_files", "an integer of at least 2 (one file is not compacted)",
                     config.min_input_files)
    return config


def _usage(r: _Reader) -> UsageConfig:
    r.unknown({"period", "settle_seconds", "audit_expected", "max_silence_hours"})
    return UsageConfig(
        period=r.choice("period", ("hour", "day"), "hour"),
        settle_seconds=r.positive("settle_seconds", float, 300.0, zero_ok=True),
        audit_expected=r.get("audit_expected", bool, False),
        max_silence_hours=r.positive("max_silence_hours", float, 168.0, zero_ok=True),
    )


def _cells(top: _Reader) -> tuple[CellConfig, ...]:
    raw = top.get("cells", list, [])
    cells = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise top.fail(f"cells[{i}]", "a mapping with name and transport_url", item)
        r = _Reader(top.file, item, f"cells[{i}].")
        r.unknown({"name", "transport_url", "exchanges", "topics", "priorities", "durable_exchanges"})
        url = r.get("transport_url", str)
        try:
            transport = parse_transport_url(url)
        except TransportURLError as exc:
            raise r.fail("transport_url", f"an oslo.messaging rabbit:// URL ({exc})") from None
        cells.append(
            CellConfig(
                name=r.get("name", str),
                transport=transport,
                exchanges=r.names("exchanges", DEFAULT_EXCHANGES),
                topics=r.names("topics", DEFAULT_TOPICS),
                priorities=r.names("priorities", PRIORITIES, allowed=PRIORITIES),
                durable_exchanges=r.get("durable_exchanges", bool, False),
            )
        )
    names = [c.name for c in cells]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise top.fail("cells", "unique cell names", dup)
    return tuple(cells)


def _kafka(r: _Reader) -> KafkaConfig:
    r.unknown({"bootstrap_servers", "topic_prefix", "partitions"})
    return KafkaConfig(
        bootstrap_servers=r.get("bootstrap_servers", str, "127.0.0.1:9092"),
        topic_prefix=r.get("topic_prefix", str, "stacktide"),
        partitions=r.positive("partitions", int, 4),
    )


def _bridge(r: _Reader) -> BridgeConfig:
    d = BridgeConfig()
    r.unknown(set(d.__slots__))
    config = BridgeConfig(
        queue_prefix=r.get("queue_prefix", str, d.queue_prefix),
        quorum_queues=r.get("quorum_queues", bool, d.quorum_queues),
        prefetch=r.positive("prefetch", int, d.prefetch),
        max_in_flight=r.positive("max_in_flight", int, d.max_in_flight),
        ack_interval_ms=r.positive("ack_interval_ms", int, d.ack_interval_ms, zero_ok=True),
        metrics_host=r.get("metrics_host", str, d.metrics_host),
        metrics_port=r.positive("metrics_port", int, d.metrics_port, zero_ok=True),
        lag_interval_s=r.positive("lag_interval_s", float, d.lag_interval_s),
        reconnect_initial_s=r.positive("reconnect_initial_s", float, d.reconnect_initial_s),
        reconnect_max_s=r.positive("reconnect_max_s", float, d.reconnect_max_s),
        heartbeat_s=r.positive("heartbeat_s", int, d.heartbeat_s, zero_ok=True),
        shutdown_timeout_s=r.positive("shutdown_timeout_s", float, d.shutdown_timeout_s),
    )
    if config.metrics_port > 65535:
        raise r.fail("metrics_port", "a TCP port (0 turns the endpoint off)", config.metrics_port)
    if config.reconnect_max_s < config.reconnect_initial_s:
        raise r.fail("reconnect_max_s", f"at least reconnect_initial_s ({config.reconnect_initial_s})",
                     config.reconnect_max_s)
    return config


def _local(r: _Reader, base: Path) -> LocalConfig:
    r.unknown({"state_dir", "cache_dir", "rabbitmq_port", "kafka_port", "kafka_controller_port",
               "flink_rest_port", "flink_rpc_port"})
    cache = os.environ.get("STACKTIDE_CACHE") or r.get("cache_dir", str, "~/.cache/stacktide")
    return LocalConfig(
        state_dir=(base / os.path.expanduser(r.get("state_dir", str, "../.stacktide"))).resolve(),
        cache_dir=(base / os.path.expanduser(cache)).resolve(),
        rabbitmq_port=r.positive("rabbitmq_port", int, 5672),
        kafka_port=r.positive("kafka_port", int, 9092),
        kafka_controller_port=r.positive("kafka_controller_port", int, 9093),
        flink_rest_port=_port(r, "flink_rest_port", r.positive("flink_rest_port", int, 8081)),
        flink_rpc_port=_port(r, "flink_rpc_port", r.positive("flink_rpc_port", int, 6123)),
    )


# Query parameters of a jdbc:postgresql: URI that PostgreSQL's JDBC driver (Flink) and libpq
# (pyiceberg, through psycopg2) both understand, with the same meaning.
POSTGRES_URI_PARAMS = ("sslmode", "sslrootcert")
POSTGRES_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _iceberg(r: _Reader, local: LocalConfig) -> IcebergConfig:
    """Without uri/warehouse, the embedded default: SQLite catalog and warehouse in the state dir."""
    r.unknown({"catalog_name", "uri", "warehouse", "namespace", "user", "password", "s3"})
    home = local.state_dir / "iceberg"
    uri = r.get("uri", str, f"jdbc:sqlite:{home / 'catalog.db'}")
    user, password = r.get("user", str, ""), r.secret("password")
    if uri.startswith("jdbc:postgresql:"):
        _check_postgres_uri(r, uri)
        if password and not user:
            raise r.fail("user", "the user the password belongs to (iceberg.password is set)")
    elif uri.startswith("jdbc:sqlite:"):
        if user or password:
            raise r.fail("user" if user else "password", "no credentials with a jdbc:sqlite: uri")
    else:
        raise r.fail("uri", "a JDBC URI: jdbc:sqlite:/path/catalog.db or "
                     "jdbc:postgresql://host:port/database", uri)
    warehouse = r.get("warehouse", str, (home / "warehouse").as_uri())
    return IcebergConfig(
        catalog_name=r.get("catalog_name", str, "stacktide"),
        uri=uri,
        warehouse=warehouse,
        namespace=r.get("namespace", str, "stacktide"),
        user=user,
        password=password,
        s3=_warehouse(r, warehouse),
    )


# S3's rules for bucket names (which MinIO and Ceph RGW apply too): 3 to 63 lower-case letters,
# digits, dots and hyphens, beginning and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _warehouse(r: _Reader, warehouse: str) -> S3Config | None:
    """Check ``iceberg.warehouse`` and read ``iceberg.s3``, which only an ``s3://`` warehouse
    takes: a local folder (``file://``) or a bucket and prefix (``s3://bucket/prefix``)."""
    form = "file:///path/to/warehouse or s3://bucket/prefix"
    parts = urlsplit(warehouse)
    if parts.scheme == "file":
        if not parts.path.startswith("/") or parts.netloc:
            raise r.fail("warehouse", f"{form} (an absolute path after file://)", warehouse)
        if "s3" in r.data:
            raise r.fail("s3", "no s3 section with a file:// warehouse (iceberg.warehouse is "
                         f"{warehouse})")
        return None
    if parts.scheme != "s3":
        raise r.fail("warehouse", form, warehouse)
    if parts.username is not None or parts.password is not None:
        raise r.fail("warehouse", f"{form} without credentials: put them in iceberg.s3")
    if not _BUCKET.match(parts.netloc):
        raise r.fail("warehouse", f"{form} whose bucket is 3-63 lower-case letters, digits, dots "
                     "and hyphens", warehouse)
    if parts.query or parts.fragment:
        raise r.fail("warehouse", f"{form} without '?' or '#'", warehouse)
    return _s3(r.section("s3"))


def _s3(r: _Reader) -> S3Config:
    d = S3Config()
    r.unknown(set(d.__slots__))
    endpoint = r.get("endpoint", str, d.endpoint).rstrip("/")
    if endpoint:
        form = "an http:// or https:// URL such as http://minio:9000 (empty: AWS S3)"
        parts = _url(r, "endpoint", endpoint, form,
                     "they go in iceberg.s3.access_key_id and secret_access_key")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path \
                or parts.query or parts.fragment:
            raise r.fail("endpoint", form, endpoint)
    region = r.get("region", str, d.region)
    if not re.fullmatch(r"[a-z0-9-]+", region):
        raise r.fail("region", "a region name such as us-east-1 (any name for MinIO or Ceph)",
                     region)
    key_id = r.get("access_key_id", str, d.access_key_id)
    from_env = os.environ.get(S3_SECRET_ENV)
    secret = from_env if from_env is not None else r.secret("secret_access_key")
    if bool(key_id) != bool(secret):
        if key_id:
            raise r.fail("secret_access_key", f"the secret key of access_key_id {key_id!r}, in "
                         f"the file or in ${S3_SECRET_ENV}")
        raise r.fail("access_key_id", "the key id the secret key belongs to "
                     f"(iceberg.s3.secret_access_key or ${S3_SECRET_ENV} is set)")
    return S3Config(
        endpoint=endpoint,
        region=region,
        path_style_access=r.get("path_style_access", bool, d.path_style_access),
        access_key_id=key_id,
        secret_access_key=secret,
    )


def _url(r: _Reader, key: str, url: str, form: str, credentials: str,
         shown: str | None = None) -> SplitResult:
    """*url* split; refused, naming *key*, when it carries credentials (the error then shows
    no part of it: a URL goes into log lines whole), *credentials* saying where they belong,
    or when its port is not a number (an error showing *shown*, else *url*)."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise r.fail(key, f"{form} without credentials: {credentials}")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise r.fail(key, f"{form} with a port number", url if shown is None else shown) from None
    return parts


def _check_postgres_uri(r: _Reader, uri: str) -> None:
    """``jdbc:postgresql://host[:port]/database[?sslmode=…]``: the one form both catalog clients
    read alike. Credentials in the URI are refused (with no word of what they were), so that
    the URI itself never carries a password into a log line or ``local status``."""
    form = "jdbc:postgresql://host[:port]/database"
    where = "put them in iceberg.user and iceberg.password"
    parts = _url(r, "uri", uri.removeprefix("jdbc:"), form, where, shown=uri)
    query = parse_qs(parts.query, keep_blank_values=True)
    if {"user", "password"} & set(query):
        raise r.fail("uri", f"{form} without credentials: {where}")
    database = parts.path.removeprefix("/")
    if not parts.hostname or not database or "/" in database or parts.fragment:
        raise r.fail("uri", form, uri)
    unknown = sorted(set(query) - set(POSTGRES_URI_PARAMS))
    if unknown:
        raise r.fail("uri", f"only the parameters {', '.join(POSTGRES_URI_PARAMS)} after '?' "
                     "(the ones both Flink's JDBC driver and pyiceberg's libpq read)", unknown)
    for mode in query.get("sslmode", []):
        if mode not in POSTGRES_SSLMODES:
            raise r.fail("uri", f"sslmode one of {', '.join(POSTGRES_SSLMODES)}", mode)


S = TypeVar("S")


def _section(r: _Reader, cls: Callable[..., S]) -> S:
    """A flat section whose keys are the dataclass fields, each typed by its default."""
    defaults = cls()
    fields = {f: getattr(defaults, f) for f in defaults.__slots__}  # type: ignore[attr-defined]
    r.unknown(set(fields))
    return cls(**{
        k: r.positive(k, type(v), v, zero_ok=True) if isinstance(v, (int, float)) else r.get(k, type(v), v)
        for k, v in fields.items()
    })
