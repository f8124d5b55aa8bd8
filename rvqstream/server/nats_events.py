"""How the JetStream channel log names its streams and subjects, and carries message codes in its
events (docs/formats.md §8).

A channel's namespace is its name up to the first "/" (``tenant/news`` is in ``tenant``); a name
without "/" is in the default namespace. Each namespace is one stream: ``<prefix>`` for the default
namespace, ``<prefix>_<hex of the namespace's UTF-8>`` otherwise (``<prefix>_h<first 32 hex digits
of its sha256>`` when that would pass 64 characters). Its subjects are
``<prefix>.<token>.<hex of the channel's UTF-8>.new`` (events that create messages) and ``….upd``
(the rest), where the token is ``_`` for the default namespace and the namespace's hex otherwise.
"""

from __future__ import annotations

import hashlib
import re

from rvqstream._proto import log_pb2
from rvqstream.server.logstore import Code

PREFIX = re.compile(r"[A-Za-z0-9-]{1,32}")
PREFIX_RULE = "1-32 letters, digits or '-'"
MAX_STREAM_NAME = 64


class Layout:
    """Stream and subject names under one deployment ``prefix`` (``ValueError`` unless it follows
    ``PREFIX_RULE``)."""

    def __init__(self, prefix: str):
        if not PREFIX.fullmatch(prefix):
            raise ValueError(f"NATS prefix {prefix!r} is invalid: {PREFIX_RULE}")
        self.prefix = prefix

    @staticmethod
    def namespace(channel: str) -> str:
        """``channel``'s namespace ("" for the default one)."""
        return channel.split("/", 1)[0] if "/" in channel else ""

    def _token(self, namespace: str) -> str:
        return namespace.encode().hex() if namespace else "_"

    def stream(self, channel: str) -> tuple[str, str]:
        """(stream name, its subject filter) of ``channel``'s namespace."""
        namespace = self.namespace(channel)
        if not namespace:
            name = self.prefix
        else:
            name = f"{self.prefix}_{namespace.encode().hex()}"
            if len(name) > MAX_STREAM_NAME:
                name = f"{self.prefix}_h{hashlib.sha256(namespace.encode()).hexdigest()[:32]}"
        return name, f"{self.prefix}.{self._token(namespace)}.>"

    def owns_stream(self, name: str) -> bool:
        """Whether a stream of that name is one of this deployment's."""
        return name == self.prefix or name.startswith(self.prefix + "_")

    def subject(self, channel: str, creates: bool) -> str:
        """The subject of ``channel``'s events that create messages, or of its other events."""
        token = self._token(self.namespace(channel))
        return f"{self.prefix}.{token}.{channel.encode().hex()}.{'new' if creates else 'upd'}"


def code_to_pb(code: Code | None) -> log_pb2.LogCode | None:
    """A message code as an event field (None: the field is left unset)."""
    if code is None:
        return None
    out = log_pb2.LogCode(model_id=code.model_id, code=code.code)
    if code.near_of is not None:
        out.near_of = code.near_of
    if code.near_record is not None:
        out.near_record = code.near_record
    return out


def code_from_pb(code: log_pb2.LogCode) -> Code | None:
    """The event field as a message code (None when unset)."""
    if not code.model_id:
        return None
    return Code(code.model_id, code.code, code.near_of if code.HasField("near_of") else None,
                code.near_record if code.HasField("near_record") else None)
