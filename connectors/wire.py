"""One AMQP body in, one normalized :class:`~stacktide.schema.Envelope` (or why not) out.

:func:`parse` takes the body exactly as RabbitMQ delivered it, in either oslo.messaging
format (WIRE-FORMAT.md §3): 1.0, the flat notification dict with ``_context_*`` keys,
or 2.0, ``{"oslo.version": "2.0", "oslo.message": "<the 1.0 dict as a JSON string>"}``.
It also reads the Kafka driver's nested ``_context`` dict and ceilometer's internal
listener layout (``ctxt`` + ``metadata``). It never raises on input: anything it cannot
normalize comes back as :class:`Rejected` with a reason code (``code: detail``) for the
dead-letter headers.

Two decoders, one meaning: orjson decodes (2-5x faster than :mod:`json`), json stays
the reference. A body orjson refuses (bad JSON or UTF-8, a lone surrogate, 1e400), may
have read otherwise (a payload float beyond 2**63: orjson reads integers past 64 bits
as floats) or that is to be rejected is decoded again by json, whose values and
reasons are the outcome.

Secrets: :func:`scrub` removes every key whose name contains ``password``, ``token`` or
``secret`` (any case, any depth), which covers ``_context_auth_token``. The payload is
walked once (:func:`_inspect`) and rebuilt only when such a key is in it (a few messages
in a hundred). The context never goes into the envelope (only its ids do), so it is
neither copied nor scrubbed. :func:`scrub_body` cleans dead letters.

Per message, besides decoding: two ``count`` passes for :data:`MAX_DEPTH`, the walk,
ids read by code per format (:func:`_ids`, held equal to :data:`LOOKUPS` by the tests),
oslo timestamps sliced; publishers and dates cached. Nothing is logged.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from math import isinf
from typing import Any, Final, Literal

import orjson

from stacktide.config import PRIORITIES
from stacktide.schema import Envelope, format_time

MAX_BYTES: Final = 8 * 1024 * 1024
"""Default body size limit; bigger bodies are rejected ``too-large`` before decoding."""

MAX_DEPTH: Final = 100
"""Deepest nesting accepted (real notifications stay under 20); deeper is ``too-large``,
so that no envelope can exhaust the recursion of whoever serializes it later."""

MESSAGE_ID_NAMESPACE: Final = uuid.UUID("5d0c3c1e-7a52-4b8e-9a39-2f1f0b0e6d11")
"""uuid5 namespace for bodies without any message id: the id is uuid5(namespace, body)."""

_PRIORITIES: Final = {p: p for p in PRIORITIES} | {p.upper(): p for p in PRIORITIES}
_NOVA_PREFIXES: Final = ("compute.instance", "instance.", "scheduler.", "compute_task.",
                         "compute.exception")
_CONTEXT_PREFIX: Final = "_context_"
_CONTEXT_KEYS: Final = ("project_id", "tenant", "user_id", "user", "request_id", "global_request_id")
_FLAT_KEYS: Final = tuple(_CONTEXT_PREFIX + key for key in _CONTEXT_KEYS)
# An escaped lone UTF-16 surrogate, which Envelope.to_json cannot encode (orjson refuses it).
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89abAB]")
_MIN_YEAR: Final = 1970
_VERDICTS: dict[str, bool] = {}
_MAX_VERDICTS: Final = 65_536  # caches are bounded: keys come from the network
_INT64: Final = 2.0 ** 63  # orjson reads integers beyond 64 bits as floats this large
_CLOCK: Final = frozenset(f"{h:02d}:{m:02d}" for h in range(24) for m in range(60))
_SECONDS: Final = frozenset(f":{s:02d}" for s in range(60))
_EMPTY: Final[dict[str, Any]] = {}  # stands for an absent payload/data/context; never written

Source = Literal["ctx", "payload", "data", "meta"]
"""Where a lookup path starts: the context (``_context_*`` without the prefix, ``_context``
or ``ctxt``), the payload, a versioned payload's ``nova_object.data``, ceilometer's metadata."""
Lookup = tuple[Source, tuple[str | int, ...]]

LOOKUPS: Final[dict[str, tuple[Lookup, ...]]] = {
    # Payload first, as StackTach and ceilometer's event definitions do: the payload
    # names the resource's owner, the context whoever made the request (often admin).
    # _ids is this table written out as code; a test holds the two equal.
    "tenant_id": (("payload", ("tenant_id",)), ("data", ("tenant_id",)),
                  ("payload", ("project_id",)), ("data", ("project_id",)),
                  ("payload", ("owner",)), ("ctx", ("project_id",)), ("ctx", ("tenant",))),
    "user_id": (("payload", ("user_id",)), ("data", ("user_id",)),
                ("ctx", ("user_id",)), ("ctx", ("user",))),
    "request_id": (("ctx", ("request_id",)), ("payload", ("request_id",)),
                   ("data", ("request_id",))),
    "global_request_id": (("ctx", ("global_request_id",)),),
    # For every event: an explicit instance id/uuid key in the payload.
    "instance_id": (("payload", ("instance_id",)), ("payload", ("instance_uuid",)),
                    ("data", ("instance_uuid",)), ("data", ("instance_id",))),
}

NOVA_INSTANCE_LOOKUPS: Final[tuple[Lookup, ...]] = (
    # Only for nova's own events (see _is_nova_event): there ``uuid`` is the instance's.
    ("data", ("uuid",)),                                    # InstanceActionPayload & co
    ("data", ("request_spec", "nova_object.data", "instance_uuid")),
    ("data", ("instance", "nova_object.data", "uuid")),
    ("payload", ("exception", "kwargs", "uuid")),
    ("payload", ("exception", "kwargs", "instance_uuid")),
    ("payload", ("exception", "kwargs", "instance_id")),
    ("payload", ("instance", "uuid")),
    ("payload", ("args", "instance", "uuid")),              # legacy wrap_exception errors
    ("payload", ("request_spec", "instance_properties", "uuid")),
    ("payload", ("request_spec", "instance_uuids", 0)),
    ("payload", ("instance_properties", "uuid")),
)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a body is not a notification: ``"<code>: <detail>"``, code first."""

    reason: str

    @property
    def code(self) -> str:
        return self.reason.split(":", 1)[0]


class _Reject(Exception):
    """Internal control flow: carries a reason out of _normalize, never escapes parse()."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


class _Exact(Exception):
    """Internal: orjson cannot be trusted with this body; decode it with json instead."""


def parse(
    body: bytes, *, cell: str, exchange: str, routing_key: str, received: datetime | str,
    max_bytes: int = MAX_BYTES,
) -> Envelope | Rejected:
    """Normalize one AMQP *body*; never raises on any body.

    *received* is a datetime, or the string :func:`~stacktide.schema.format_time` made
    of one (the bridge formats the clock once for many messages). A notification without
    ``timestamp`` (nor ``metadata.timestamp``) gets it as its ``generated`` time; one whose
    timestamp is present but not a date is rejected.
    """
    if len(body) > max_bytes:
        return Rejected(f"too-large: {len(body)} bytes > {max_bytes}")
    stamp = received if isinstance(received, str) else format_time(received)
    try:
        try:
            msg, text = _decode_fast(body)
            return _normalize(body, msg, text, True, cell, exchange, routing_key, stamp)
        except (_Exact, _Reject):
            pass  # json decides, and words the reason
        msg, text = _decode_exact(body)
        return _normalize(body, msg, text, False, cell, exchange, routing_key, stamp)
    except _Reject as exc:
        return Rejected(str(exc))
    except RecursionError:
        return Rejected(f"too-large: nested deeper than {MAX_DEPTH} levels")


def _decode_fast(body: bytes) -> tuple[dict[str, Any], str | bytes]:
    """orjson; any doubt raises _Exact. The message and its own JSON (2.0: the inner one)."""
    try:
        msg, text = orjson.loads(body), body
        if msg.__class__ is dict and "oslo.version" in msg and "oslo.message" in msg:
            version, text = msg["oslo.version"], msg["oslo.message"]
            if version.__class__ is not str or version[:2] != "2." or text.__class__ is not str:
                raise _Exact
            msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _Exact from None
    if msg.__class__ is not dict:
        raise _Exact  # rejected either way; json words the reason
    return msg, text


def _decode_exact(body: bytes) -> tuple[dict[str, Any], str]:
    """The reference decoder (:mod:`json`): its reasons and its values."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Reject("not-utf8", f"byte {exc.start}") from None
    msg = _loads(text, "invalid-json")
    if not isinstance(msg, dict):
        raise _Reject("not-an-object", f"top level is {_kind(msg)}")
    if "oslo.version" not in msg or "oslo.message" not in msg:
        return msg, text
    version, message = msg["oslo.version"], msg["oslo.message"]
    if not isinstance(version, str) or version.split(".", 1)[0] != "2":
        raise _Reject("bad-envelope", f"oslo.version {version!r} is not 2.x")
    if not isinstance(message, str):
        raise _Reject("bad-envelope", f"oslo.message is {_kind(message)}, not a JSON string")
    inner = _loads(message, "bad-envelope")
    if not isinstance(inner, dict):
        raise _Reject("bad-envelope", f"oslo.message holds {_kind(inner)}, not an object")
    return inner, message


def _normalize(body: bytes, msg: dict[str, Any], text: str | bytes, fast: bool,
               cell: str, exchange: str, routing_key: str, received: str) -> Envelope:
    """Everything after decoding. *text* is the message's JSON (the inner one of a 2.0 body).
    On the *fast* (orjson) path any doubt raises _Exact, any rejection _Reject: then json
    decides. Only the json path can meet a lone surrogate, so only it looks for one."""
    if isinstance(text, str):
        _check_depth(msg, text.count("{") + text.count("["))
    else:
        _check_depth(msg, text.count(b"{") + text.count(b"["))
    event_type = msg.get("event_type")
    if event_type.__class__ is not str or not event_type:
        raise _Reject("missing-event-type", "no event_type string")
    priority = _priority(msg.get("priority"), routing_key)
    meta = msg.get("metadata")  # ceilometer's layout: message_id and timestamp there
    meta = meta if meta.__class__ is dict else None

    payload = msg.get("payload")
    if (payload.__class__ is dict or payload.__class__ is list) and _inspect(payload, fast):
        payload = scrub(payload)
    p = payload if payload.__class__ is dict else _EMPTY
    data = p.get("nova_object.data")
    versioned = "nova_object.name" in p or "nova_object.data" in p
    tenant, user, request, global_request, instance = _ids(msg, p, data)
    if instance is None and _is_nova_event(event_type):
        roots = {"ctx": None, "payload": payload, "meta": meta,
                 "data": data if data.__class__ is dict else None}
        instance = _first(roots, NOVA_INSTANCE_LOOKUPS)

    stamp = msg.get("timestamp")
    if stamp is None and meta is not None:
        stamp = meta.get("timestamp")
    publisher = msg.get("publisher_id")
    publisher = publisher if publisher.__class__ is str and publisher else None
    service, host = split_publisher(publisher)
    envelope = Envelope(
        message_id=_message_id(msg, meta, body),
        cell=cell, exchange=exchange, routing_key=routing_key,
        priority=priority, event_type=event_type,
        publisher_id=publisher, service=service, host=host,
        generated=received if stamp is None else _timestamp(stamp),
        received=received,
        request_id=request, global_request_id=global_request,
        tenant_id=tenant, user_id=user, instance_id=instance,
        format="versioned" if versioned else "legacy",
        payload=payload,
    )
    if not fast and "\\u" in text and _SURROGATE_ESCAPE.search(str(text)) is not None:
        try:
            envelope.to_json()
        except UnicodeEncodeError:
            raise _Reject("invalid-json", "lone UTF-16 surrogate in a string") from None
    return envelope


def _check_depth(obj: Any, brackets: int) -> None:
    """Reject nesting deeper than MAX_DEPTH; free unless the text has that many brackets."""
    if brackets <= MAX_DEPTH:
        return
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Reject("too-large", f"nested deeper than {MAX_DEPTH} levels")
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))


def _not_json(literal: str) -> Any:
    raise ValueError(f"{literal[:40]} is not JSON")


def _finite(literal: str) -> float:
    if isinf(value := float(literal)):  # 1e400: it would leave as Infinity, not JSON either
        raise ValueError(f"number {literal[:40]} is out of range")
    return value


_DECODER: Final = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)


def _loads(text: str, code: str) -> Any:
    try:
        return _DECODER.decode(text)
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, over-long integers
        raise _Reject(code, str(exc)) from None


def _priority(value: Any, routing_key: str) -> str:
    known = _PRIORITIES.get(value) if value.__class__ is str else None
    if known is not None:
        return known
    if value is None:
        value = routing_key.rpartition(".")[2]
    if not isinstance(value, str):
        raise _Reject("unknown-priority", f"priority is {_kind(value)}")
    lowered = value.lower()
    if lowered not in _PRIORITIES:
        raise _Reject("unknown-priority", repr(value[:40]))
    return lowered


def _inspect(node: Any, fast: bool) -> bool:
    """Whether some key of *node*, at any depth, names a secret (then it is scrubbed).

    On the *fast* path it raises _Exact at a float beyond 2**63, maybe an integer
    orjson could not hold; so it walks everything, even past a secret.
    """
    secret = False
    values = node
    if node.__class__ is dict:
        verdicts = _VERDICTS
        for key in node:
            verdict = verdicts.get(key)
            if verdict or (verdict is None and is_secret_key(key)):
                secret = True
        values = node.values()
    for value in values:
        kind = value.__class__
        if kind is dict or kind is list:
            secret = _inspect(value, fast) or secret
        elif kind is float and fast and abs(value) >= _INT64:
            raise _Exact
    return secret


def _ids(msg: dict[str, Any], p: dict[str, Any], data: Any) -> tuple[str | None, ...]:
    """tenant, user, request, global request and instance ids: :data:`LOOKUPS` as code.

    The context is read straight from the ``_context_*`` keys, unless a nested one is
    there (then merged as the table reads it: flat keys over ``ctxt`` over ``_context``).
    """
    if "_context" in msg or "ctxt" in msg:
        ctx: dict[str, Any] = {}
        for nested in (msg.get("_context"), msg.get("ctxt")):
            if nested.__class__ is dict:
                ctx.update(nested)
        ctx.update((k[9:], v) for k, v in msg.items() if k[:9] == _CONTEXT_PREFIX)
        c_project, c_tenant, c_user, c_user2, c_request, c_global = map(ctx.get, _CONTEXT_KEYS)
    else:
        c_project, c_tenant, c_user, c_user2, c_request, c_global = map(msg.get, _FLAT_KEYS)
    d = data.get if data.__class__ is dict else _EMPTY.get  # legacy: no nova_object.data
    return (
        _str(p.get("tenant_id"), d("tenant_id"), p.get("project_id"), d("project_id"),
             p.get("owner"), c_project, c_tenant),
        _str(p.get("user_id"), d("user_id"), c_user, c_user2),
        _str(c_request, p.get("request_id"), d("request_id")),
        _str(c_global),
        _str(p.get("instance_id"), p.get("instance_uuid"), d("instance_uuid"), d("instance_id")),
    )


def _str(*values: Any) -> str | None:
    """The first non-empty string."""
    for value in values:
        if value.__class__ is str and value:
            return value
    return None


def _message_id(msg: dict[str, Any], meta: dict[str, Any] | None, body: bytes) -> str:
    for value in (msg.get("message_id"),
                  meta.get("message_id") if meta is not None else None,
                  msg.get("_unique_id")):
        if isinstance(value, str) and value:
            return value
    # The whole body, either format, so that redeliveries agree. It is valid UTF-8 here.
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, body.decode("utf-8", "replace")))


def _timestamp(value: Any) -> str:
    """oslo's ``str(datetime)`` (with or without fraction), ISO with T, Z or an offset.

    oslo's own two forms (``YYYY-MM-DD HH:MM:SS`` and ``…SS.ffffff``, naive UTC) are
    rewritten by slicing once their date (cached) and clock are known valid; any other
    string takes the general path.
    """
    if value.__class__ is str and (n := len(value)) in (19, 26) and value[10] == " " \
            and value.isascii() and value[11:16] in _CLOCK and value[16:19] in _SECONDS \
            and (n == 19 or (value[19] == "." and value[20:].isdecimal())) \
            and _valid_date(value[:10]):
        return f"{value[:10]}T{value[11:19]}.{value[20:] or '000000'}Z"
    return _timestamp_general(value)


@lru_cache(maxsize=4096)
def _valid_date(text: str) -> bool:
    try:
        return text[4] == text[7] == "-" and datetime.fromisoformat(text).year >= _MIN_YEAR
    except ValueError:
        return False


def _timestamp_general(value: Any) -> str:
    if not isinstance(value, str):
        raise _Reject("bad-timestamp", f"timestamp is {_kind(value)}")
    try:
        t = datetime.fromisoformat(value)
        if t.tzinfo is not None:
            t = t.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _Reject("bad-timestamp", repr(value[:40])) from None
    if t.year < _MIN_YEAR:
        raise _Reject("bad-timestamp", f"{value[:40]!r} is before {_MIN_YEAR}")
    return format_time(t)


def _first(roots: dict[str, Any], paths: tuple[Lookup, ...]) -> str | None:
    """The first non-empty string at one of *paths*: the reference reading of the tables."""
    for source, path in paths:
        node = roots[source]
        for step in path:
            if isinstance(step, int):
                node = node[step] if isinstance(node, list) and len(node) > step else None
            elif isinstance(node, dict):
                node = node.get(step)
            else:
                node = None
                break
        if isinstance(node, str) and node:
            return node
    return None


def _is_nova_event(event_type: str) -> bool:
    # Old nova error notifications are named after the failed method (terminate_instance).
    return event_type.startswith(_NOVA_PREFIXES) or event_type.endswith("_instance")


def split_publisher(publisher_id: str | None) -> tuple[str | None, str | None]:
    """``compute.host1`` -> (compute, host1); ``nova-compute:host1`` -> (nova-compute, host1).

    Split at the first ``.`` or ``:``, whichever comes first (hosts may contain dots);
    no separator: the whole id is the service and the host is None.
    """
    return _split(publisher_id) if publisher_id else (None, None)


@lru_cache(maxsize=4096)  # a cloud has one publisher id per service and host
def _split(publisher_id: str) -> tuple[str | None, str | None]:
    dot, colon = publisher_id.find("."), publisher_id.find(":")
    cut = min(i for i in (dot, colon, len(publisher_id)) if i >= 0)
    service, host = publisher_id[:cut], publisher_id[cut + 1:]
    return service or None, host or None


def is_secret_key(key: str) -> bool:
    """Whether *key* names a password, token or secret (any case); verdicts are cached."""
    verdict = _VERDICTS.get(key)
    if verdict is None:
        lowered = key.lower()
        verdict = "password" in lowered or "token" in lowered or "secret" in lowered
        if len(_VERDICTS) < _MAX_VERDICTS:
            _VERDICTS[key] = verdict
    return verdict


def scrub(obj: Any) -> Any:
    """A copy of *obj* without any key naming a password, token or secret, at any depth.

    Dicts and lists are rebuilt; everything else is shared with the input.
    """
    if isinstance(obj, dict):
        return _scrub_dict(obj)
    if isinstance(obj, list):
        return _scrub_list(obj)
    return obj


def _scrub_dict(d: dict[Any, Any]) -> dict[Any, Any]:
    out = {}
    for k, v in d.items():
        secret = _VERDICTS.get(k)
        if secret is None:
            secret = isinstance(k, str) and is_secret_key(k)
        if secret:
            continue
        if isinstance(v, dict):
            v = _scrub_dict(v)
        elif isinstance(v, list):
            v = _scrub_list(v)
        out[k] = v
    return out


def _scrub_list(items: list[Any]) -> list[Any]:
    return [_scrub_dict(v) if isinstance(v, dict) else _scrub_list(v) if isinstance(v, list)
            else v for v in items]


def scrub_body(body: bytes) -> bytes:
    """The body for the dead-letter topic: the raw bytes, unless they hold a secret.

    Dead letters keep the exact bytes that failed, which makes them debuggable; the one
    exception is a JSON body with a secret key (``_context_auth_token``, ``*password*`` …):
    it comes back re-encoded without it (for a 2.0 envelope, the inner message is scrubbed
    and re-encoded as the ``oslo.message`` string). Not JSON: no keys, returned unchanged.
    """
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return body
    try:
        cleaned = scrub(obj)
        if isinstance(cleaned, dict) and isinstance(cleaned.get("oslo.message"), str):
            try:
                inner = json.loads(cleaned["oslo.message"])
            except ValueError:
                inner = None
            if inner is not None:
                scrubbed_inner = scrub(inner)
                if scrubbed_inner != inner:
                    cleaned["oslo.message"] = json.dumps(scrubbed_inner)
        if cleaned == obj:
            return body
        return json.dumps(cleaned).encode()
    except RecursionError:
        return body


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
