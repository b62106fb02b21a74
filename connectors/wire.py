"""One AMQP body in, one normalized :class:`~stacktide.schema.Envelope` (or why not) out.

:func:`parse` takes the body exactly as RabbitMQ delivered it, in either oslo.messaging
format (WIRE-FORMAT.md §3): 1.0, the flat notification dict with ``_context_*`` keys,
or 2.0, ``{"oslo.version": "2.0", "oslo.message": "<the 1.0 dict as a JSON string>"}``.
It also reads the Kafka driver's nested ``_context`` dict and ceilometer's internal
listener layout (``ctxt`` + ``metadata``). It never raises on input: anything it cannot
normalize comes back as :class:`Rejected` with a reason code (``code: detail``) for the
dead-letter headers.

Secrets: :func:`scrub` removes every key whose name contains ``password``, ``token`` or
``secret`` (any case, any depth), which covers ``_context_auth_token``. The payload is
scrubbed before it goes into the envelope; the rebuild is skipped when the message text
provably holds no such key outside the top-level ``_context_*`` keys (see
:func:`_may_hold_secrets`), which is most messages. The context never goes into the
envelope (only its request/tenant/user ids do), so it is neither copied nor scrubbed here.
:func:`scrub_body` cleans a raw body for the dead-letter topic.

Cost per message: each JSON layer is decoded once, by one module-level decoder; no
regex runs per key; nesting is bounded (:data:`MAX_DEPTH`) so that the envelope can
always be serialized.

Where ids live is data (:data:`LOOKUPS`, :data:`NOVA_INSTANCE_LOOKUPS`): one list of
paths per field, first non-empty string wins.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from stacktide.config import PRIORITIES
from stacktide.schema import Envelope, format_time

MAX_BYTES: Final = 8 * 1024 * 1024
"""Default body size limit; bigger bodies are rejected ``too-large`` before decoding."""

MAX_DEPTH: Final = 100
"""Deepest nesting accepted (real notifications stay under 20); deeper is ``too-large``,
so that no envelope can exhaust the recursion of whoever serializes it later."""

MESSAGE_ID_NAMESPACE: Final = uuid.UUID("5d0c3c1e-7a52-4b8e-9a39-2f1f0b0e6d11")
"""uuid5 namespace for bodies without any message id: the id is uuid5(namespace, body)."""

_PRIORITIES: Final = frozenset(PRIORITIES)
_SECRET_WORDS: Final = ("password", "token", "secret")
_NOVA_PREFIXES: Final = ("compute.instance", "instance.", "scheduler.", "compute_task.",
                         "compute.exception")
_CONTEXT_PREFIX: Final = "_context_"
# An escaped UTF-16 surrogate: the only way a decoded str can hold a lone surrogate,
# which Envelope.to_json could not encode. Only then is the envelope test-encoded.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89abAB]")
_MIN_YEAR: Final = 1970
_VERDICTS: dict[str, bool] = {}
_MAX_VERDICTS: Final = 65_536

Source = Literal["ctx", "payload", "data", "meta"]
"""Where a lookup path starts: the context (``_context_*`` with the prefix stripped,
``_context`` or ``ctxt``), the payload, the versioned payload's ``nova_object.data``,
or ceilometer's ``metadata``."""
Lookup = tuple[Source, tuple[str | int, ...]]

LOOKUPS: Final[dict[str, tuple[Lookup, ...]]] = {
    # Payload first, as StackTach and ceilometer's event definitions do: the payload
    # names the resource's owner, the context whoever made the request (often admin).
    "tenant_id": (
        ("payload", ("tenant_id",)), ("data", ("tenant_id",)),
        ("payload", ("project_id",)), ("data", ("project_id",)),
        ("payload", ("owner",)),
        ("ctx", ("project_id",)), ("ctx", ("tenant",)),
    ),
    "user_id": (
        ("payload", ("user_id",)), ("data", ("user_id",)),
        ("ctx", ("user_id",)), ("ctx", ("user",)),
    ),
    "request_id": (("ctx", ("request_id",)), ("payload", ("request_id",)),
                   ("data", ("request_id",))),
    "global_request_id": (("ctx", ("global_request_id",)),),
    # For every event: an explicit instance id/uuid key in the payload.
    "instance_id": (
        ("payload", ("instance_id",)), ("payload", ("instance_uuid",)),
        ("data", ("instance_uuid",)), ("data", ("instance_id",)),
    ),
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
    """Internal control flow: carries a reason out of _parse, never escapes parse()."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


def parse(
    body: bytes, *, cell: str, exchange: str, routing_key: str, received: datetime,
    max_bytes: int = MAX_BYTES,
) -> Envelope | Rejected:
    """Normalize one AMQP *body*; never raises on any body.

    A notification without ``timestamp`` (nor ``metadata.timestamp``) gets *received* as
    its ``generated`` time; one whose timestamp is present but not a date is rejected.
    """
    if len(body) > max_bytes:
        return Rejected(f"too-large: {len(body)} bytes > {max_bytes}")
    try:
        return _parse(body, cell, exchange, routing_key, received)
    except _Reject as exc:
        return Rejected(str(exc))
    except RecursionError:
        return Rejected(f"too-large: nested deeper than {MAX_DEPTH} levels")


def _parse(body: bytes, cell: str, exchange: str, routing_key: str,
           received: datetime) -> Envelope:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Reject("not-utf8", f"byte {exc.start}") from None
    msg = _loads(text, "invalid-json")
    if not isinstance(msg, dict):
        raise _Reject("not-an-object", f"top level is {_kind(msg)}")
    inner_text = text
    if "oslo.version" in msg and "oslo.message" in msg:
        msg, inner_text = _unwrap(msg)
    _check_depth(inner_text, msg)

    event_type = msg.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise _Reject("missing-event-type", "no event_type string")
    priority = _priority(msg.get("priority"), routing_key)
    meta = msg.get("metadata")  # ceilometer's layout: message_id and timestamp there
    meta = meta if isinstance(meta, dict) else None
    ctx, ctx_hits = _context(msg)

    payload = msg.get("payload")
    if isinstance(payload, (dict, list)) and _may_hold_secrets(inner_text, ctx_hits):
        payload = scrub(payload)
    data = payload.get("nova_object.data") if isinstance(payload, dict) else None
    versioned = isinstance(payload, dict) and (
        "nova_object.name" in payload or "nova_object.data" in payload)
    roots: dict[str, Any] = {"ctx": ctx, "payload": payload,
                             "data": data if isinstance(data, dict) else None, "meta": meta}
    found = {name: _first(roots, paths) for name, paths in LOOKUPS.items()}
    if found["instance_id"] is None and _is_nova_event(event_type):
        found["instance_id"] = _first(roots, NOVA_INSTANCE_LOOKUPS)

    stamp = msg.get("timestamp")
    if stamp is None and meta is not None:
        stamp = meta.get("timestamp")
    publisher = msg.get("publisher_id")
    publisher = publisher if isinstance(publisher, str) and publisher else None
    service, host = split_publisher(publisher)
    envelope = Envelope(
        message_id=_message_id(msg, meta, text),
        cell=cell, exchange=exchange, routing_key=routing_key,
        priority=priority, event_type=event_type,
        publisher_id=publisher, service=service, host=host,
        generated=format_time(received) if stamp is None else _timestamp(stamp),
        received=format_time(received),
        request_id=found["request_id"], global_request_id=found["global_request_id"],
        tenant_id=found["tenant_id"], user_id=found["user_id"],
        instance_id=found["instance_id"],
        format="versioned" if versioned else "legacy",
        payload=payload,
    )
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        try:
            envelope.to_json()
        except UnicodeEncodeError:
            raise _Reject("invalid-json", "lone UTF-16 surrogate in a string") from None
    return envelope


def _check_depth(text: str, obj: Any) -> None:
    """Reject nesting deeper than MAX_DEPTH; free unless the text has that many brackets."""
    if text.count("{") + text.count("[") <= MAX_DEPTH:
        return
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Reject("too-large", f"nested deeper than {MAX_DEPTH} levels")
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)  # built once, not per call


def _loads(text: str, code: str) -> Any:
    try:
        return _DECODER.decode(text)
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, over-long integers
        raise _Reject(code, str(exc)) from None


def _unwrap(outer: dict[str, Any]) -> tuple[dict[str, Any], str]:
    version, message = outer["oslo.version"], outer["oslo.message"]
    if not isinstance(version, str) or version.split(".", 1)[0] != "2":
        raise _Reject("bad-envelope", f"oslo.version {version!r} is not 2.x")
    if not isinstance(message, str):
        raise _Reject("bad-envelope", f"oslo.message is {_kind(message)}, not a JSON string")
    inner = _loads(message, "bad-envelope")
    if not isinstance(inner, dict):
        raise _Reject("bad-envelope", f"oslo.message holds {_kind(inner)}, not an object")
    return inner, message


def _priority(value: Any, routing_key: str) -> str:
    if value is None:
        value = routing_key.rpartition(".")[2]
    if not isinstance(value, str):
        raise _Reject("unknown-priority", f"priority is {_kind(value)}")
    lowered = value.lower()
    if lowered not in _PRIORITIES:
        raise _Reject("unknown-priority", repr(value[:40]))
    return lowered


def _context(msg: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """``_context_*`` keys (prefix stripped), the Kafka driver's ``_context`` dict or ``ctxt``.

    Also counts the secret words in the ``_context_*`` key names, for _may_hold_secrets.
    """
    ctx: dict[str, Any] = {}
    hits = 0
    for key in ("_context", "ctxt"):
        nested = msg.get(key)
        if isinstance(nested, dict):
            ctx.update(nested)
    for key, value in msg.items():
        if key[:9] == _CONTEXT_PREFIX:
            ctx[key[9:]] = value
            if _VERDICTS.get(key) or is_secret_key(key):
                hits += _count_words(key.lower())
    return ctx, hits


def _may_hold_secrets(text: str, context_hits: int) -> bool:
    """False only if no key of the payload can name a password, token or secret.

    Without ``\\u`` escapes, a key holding one of the words holds it literally in the JSON
    *text* (other escapes never make letters), so the words counted in the lower-cased text
    are at least those in the top-level ``_context_*`` key names, plus any in the payload.
    When the counts are equal the payload is clean and need not be rebuilt; otherwise (a
    word in some value, a nested context, an escape) the payload is scrubbed key by key.
    """
    if "\\u" in text:
        return True
    return _count_words(text.lower()) != context_hits


def _count_words(lowered: str) -> int:
    """Non-overlapping occurrences of each secret word (as str.count, but find is faster)."""
    hits = 0
    for word in _SECRET_WORDS:
        at = lowered.find(word)
        while at >= 0:
            hits += 1
            at = lowered.find(word, at + len(word))
    return hits


def _message_id(msg: dict[str, Any], meta: dict[str, Any] | None, text: str) -> str:
    for value in (msg.get("message_id"),
                  meta.get("message_id") if meta is not None else None,
                  msg.get("_unique_id")):
        if isinstance(value, str) and value:
            return value
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, text))


def _timestamp(value: Any) -> str:
    """oslo's ``str(datetime)`` (with or without fraction), ISO with T, Z or an offset."""
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
    if not publisher_id:
        return None, None
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
        if len(_VERDICTS) < _MAX_VERDICTS:  # bounded: key names come from the network
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

    Dead letters keep the exact bytes that failed, which is what makes them
    debuggable; the one exception is a body that parses as JSON and carries a
    secret key (``_context_auth_token``, ``*password*`` …): it comes back
    re-encoded without it (for a 2.0 envelope, the inner message is scrubbed and
    re-encoded as the ``oslo.message`` string). A body that is not JSON has no
    keys to find and is returned unchanged.
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
