"""The gate every RPC passes through: authentication, per-channel authorization, and the number of
calls one client may have open.

One interceptor (``Gate``) looks up each method in ``METHOD_ACCESS``, finds the caller's identity
(a bearer token in the ``authorization`` metadata, else the verified client certificate's
subject), checks the permission the method needs on the channel the request names (the first
request of a client stream), and counts the call against the caller's limit while it runs.

- no credentials, or credentials no rule knows -> UNAUTHENTICATED;
- a channel outside the identity's patterns, or an admin method without admin -> PERMISSION_DENIED;
- more open calls than ``max_calls_per_client`` -> RESOURCE_EXHAUSTED (with a retry delay);
- request bytes that are not a message of the method -> INVALID_ARGUMENT (the gate parses them).

Neither message names the channel or echoes the request. Health checks pass without credentials
(probes have none); methods missing from the table need admin.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from rvqstream.server.access import ANONYMOUS, AccessRules, Identity
from rvqstream.server.errors import ServiceError, exhausted

log = logging.getLogger(__name__)

BEARER = "bearer "


@dataclass(frozen=True)
class Access:
    """What a method needs: ``action`` is "open" (anyone), "use" (any identity), "publish" or
    "subscribe" (on the channel ``channel(request)`` names), or "admin"; ``first`` says the
    channel is in the first request of a client stream."""

    action: str
    channel: Callable | None = None
    first: bool = False


def _config_channel(request) -> str | None:
    return request.config.channel if request.WhichOneof("kind") == "config" else None


METHOD_ACCESS: dict[str, Access] = {
    "/rvqstream.v1.CodecService/EncodeStream": Access("use"),
    "/rvqstream.v1.CodecService/DecodeStream": Access("use"),
    "/rvqstream.v1.CodecService/Compress": Access("use"),
    "/rvqstream.v1.CodecService/Decompress": Access("use"),
    "/rvqstream.v1.CodecService/GetModel": Access("use"),
    "/rvqstream.v1.CodecService/ListModels": Access("use"),
    "/rvqstream.v1.ChannelService/Publish": Access("publish", _config_channel, first=True),
    "/rvqstream.v1.ChannelService/PublishStream": Access("publish", _config_channel, first=True),
    "/rvqstream.v1.ChannelService/Subscribe": Access("subscribe", lambda r: r.channel),
    "/rvqstream.v1.ChannelService/FetchMessage": Access("subscribe", lambda r: r.channel),
    "/rvqstream.v1.ChannelService/Search": Access("subscribe", lambda r: r.channel),
    "/rvqstream.v1.ChannelService/SyncCodes": Access("subscribe", lambda r: r.channel),
    "/grpc.health.v1.Health/Check": Access("open"),
    "/grpc.health.v1.Health/Watch": Access("open"),
}
ADMIN = Access("admin")        # reflection, and anything not in the table

def _unauthenticated() -> ServiceError:
    """A fresh error per call (a shared one would keep every call's frames in its traceback)."""
    return ServiceError(
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or unknown credentials: send the metadata 'authorization: Bearer <token>' or a "
        "client certificate the server knows")


def _denied(action: str) -> ServiceError:
    what = {"publish": "publish to", "subscribe": "subscribe to"}.get(action)
    message = (f"this identity may not {what} the channel it asked for" if what
               else "this call needs the admin permission")
    return ServiceError(grpc.StatusCode.PERMISSION_DENIED, message)


class Gate(grpc.aio.ServerInterceptor):
    """Authenticates, authorizes and counts every call.

    ``rules`` None: no access file; then every caller is admitted with full rights, except that
    under mTLS (``mtls``) the connection's verified certificate is the identity."""

    def __init__(self, rules: AccessRules | None, rules_path: Path | None, mtls: bool,
                 max_calls_per_client: int):
        self.rules, self.rules_path, self.mtls = rules, rules_path, mtls
        self.max_calls_per_client = max_calls_per_client
        self.open_calls: Counter[str] = Counter()

    def reload(self) -> bool:
        """Reads the access file again (on SIGHUP); a file that does not load keeps the old rules.
        -> whether the new rules are in force."""
        if self.rules_path is None:
            return False
        try:
            self.rules = AccessRules.load(self.rules_path)
        except ValueError as e:
            log.error("access file not reloaded, the old rules stay in force: %s", e)
            return False
        log.info("access file reloaded: %d identities", len(self.rules))
        return True

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None:
            return None
        return _wrap(handler, METHOD_ACCESS.get(details.method, ADMIN), self)

    def identify(self, context: grpc.aio.ServicerContext) -> Identity:
        """The caller's identity; UNAUTHENTICATED when there is none."""
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and value[:7].lower() == BEARER:
                token = value[7:].strip()
        subject = _subject(context) if self.mtls else None
        if self.rules is None:
            return Identity(subject, ("*",), ("*",), admin=True) if subject else ANONYMOUS
        identity = self.rules.by_token(token) if token else None
        if identity is None and subject is not None:
            identity = self.rules.by_subject(subject)
        if identity is None:
            raise _unauthenticated()
        return identity

    def admit(self, identity: Identity, context: grpc.aio.ServicerContext, access: Access,
              request) -> str:
        """Checks ``access`` for ``identity`` and opens a call slot -> the key to release."""
        if access.action == "admin" and not identity.admin:
            raise _denied("admin")
        if access.action in ("publish", "subscribe"):
            channel = access.channel(request) if request is not None else None
            if channel is not None and not identity.may(access.action, channel):
                raise _denied(access.action)
        key = identity.name if identity is not ANONYMOUS else "peer:" + _peer_host(context)
        if self.open_calls[key] >= self.max_calls_per_client:
            raise exhausted(f"this client has {self.open_calls[key]} calls open, the most it may",
                            retry_after_s=1.0)
        self.open_calls[key] += 1
        return key

    def release(self, key: str) -> None:
        self.open_calls[key] -= 1
        if self.open_calls[key] <= 0:
            del self.open_calls[key]


def _subject(context: grpc.aio.ServicerContext) -> str | None:
    values = context.auth_context().get("x509_subject") or []
    return values[0].decode("utf-8", "replace") if values else None


def _peer_host(context: grpc.aio.ServicerContext) -> str:
    """``ipv4:1.2.3.4:5678`` -> ``ipv4:1.2.3.4`` (one client, however many connections)."""
    peer = context.peer() or ""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


_UNPARSABLE = ServiceError(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message of this method")


async def _refuse(context: grpc.aio.ServicerContext, error: ServiceError):
    await context.abort_with_status(error.to_status())


async def _prepend(first, rest: AsyncIterator) -> AsyncIterator:
    yield first
    async for item in rest:
        yield item


async def _empty() -> AsyncIterator:
    return
    yield


def _wrap(handler: grpc.RpcMethodHandler, access: Access, gate: Gate) -> grpc.RpcMethodHandler:
    """``handler`` behind the gate: the same method, checked before it runs."""

    parse = handler.request_deserializer

    async def enter(context, request) -> str | None:
        if access.action == "open":
            return None
        try:
            return gate.admit(gate.identify(context), context, access, request)
        except ServiceError as e:
            await _refuse(context, e)

    def leave(key: str | None) -> None:
        if key is not None:
            gate.release(key)

    async def parsed(data: bytes, context):
        """The request message of ``data``; INVALID_ARGUMENT when the bytes are not one."""
        if parse is None:
            return data
        try:
            return parse(data)
        except Exception:  # noqa: BLE001 - any undecodable request is the client's error
            await _refuse(context, _UNPARSABLE)

    async def messages(requests: AsyncIterator, context) -> AsyncIterator:
        if parse is None:
            async for data in requests:
                yield data
            return
        async for data in requests:
            try:        # parsed() inline: no coroutine a message
                request = parse(data)
            except Exception:  # noqa: BLE001 - any undecodable request is the client's error
                await _refuse(context, _UNPARSABLE)
            yield request

    async def enter_stream(requests: AsyncIterator, context) -> tuple[str | None, AsyncIterator]:
        """Parses a client stream and admits the call (on its first request when the method
        names its channel there) -> (the key to release, the requests to hand on)."""
        requests = messages(requests, context)
        first = None
        if access.first:
            async for first in requests:
                requests = _prepend(first, requests)
                break
            else:
                requests = _empty()
        return await enter(context, first), requests

    async def enter_unary(request: bytes, context) -> tuple[str | None, object]:
        """Parses a request and admits the call -> (the key to release, the request)."""
        request = await parsed(request, context)
        return await enter(context, request), request

    # the gate takes the raw bytes and parses them itself, so that undecodable bytes get a status
    kwargs = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        behavior = handler.stream_stream

        async def stream_stream(requests, context):
            key, requests = await enter_stream(requests, context)
            try:
                async for response in _responses(behavior, requests, context):
                    yield response
            finally:
                leave(key)
        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)
    if handler.request_streaming:
        behavior = handler.stream_unary

        async def stream_unary(requests, context):
            key, requests = await enter_stream(requests, context)
            try:
                return await behavior(requests, context)
            finally:
                leave(key)
        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    if handler.response_streaming:
        behavior = handler.unary_stream

        async def unary_stream(request, context):
            key, request = await enter_unary(request, context)
            try:
                async for response in _responses(behavior, request, context):
                    yield response
            finally:
                leave(key)
        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    behavior = handler.unary_unary

    async def unary_unary(request, context):
        key, request = await enter_unary(request, context)
        try:
            return await behavior(request, context)
        finally:
            leave(key)
    return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)


async def _responses(behavior, request, context) -> AsyncIterator:
    """The responses of a server-streaming behavior, whether it yields them or writes them."""
    if inspect.isasyncgenfunction(behavior):
        async for response in behavior(request, context):
            yield response
    else:
        await behavior(request, context)
