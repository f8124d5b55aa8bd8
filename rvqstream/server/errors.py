"""Rich gRPC errors: a ServiceError raised anywhere in a handler becomes a google.rpc.Status.

Handlers are wrapped with :func:`rpc_errors`; the status carries the code, a message that says what
was wrong and, for bad fields, a ``google.rpc.BadRequest`` detail naming the field.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from rvqstream.models import errors as codec_errors
from rvqstream.server.logstore import LogUnavailable

log = logging.getLogger(__name__)


ECHO_CHARS = 64        # at most this much of a client's input is quoted back in an error
RETRY_AFTER_KEY = "rvqstream-retry-after-ms"   # the retry delay as plain metadata, for the SDK
LOG_RETRY_S = 1.0      # when a client may try again after the channel log was unavailable


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


class ServiceError(Exception):
    """An RPC failure with a gRPC status code; ``field`` names the offending request field;
    ``retry_after_s`` (a ``google.rpc.RetryInfo`` detail, and the ``rvqstream-retry-after-ms``
    trailer) tells the client the condition is passing (a full disk, a busy server) and when to
    try again."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        self.retry_after_s = retry_after_s

    def to_status(self) -> grpc.Status:
        details = []
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(self.retry_after_s * 1e9))
            info = any_pb2.Any()
            info.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
            details.append(info)
        if self.field is not None:
            bad = error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(
                    field=self.field, description=self.message)])
            detail = any_pb2.Any()
            detail.Pack(bad)
            details.append(detail)
        status = rpc_status.to_status(status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=details))
        if self.retry_after_s is None:
            return status
        return _Status(status.code, status.details, (
            *status.trailing_metadata, (RETRY_AFTER_KEY, str(round(self.retry_after_s * 1000)))))


def invalid(message: str, field: str | None = None) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message, field)


def exhausted(message: str, field: str | None = None, retry_after_s: float | None = None) -> ServiceError:
    """RESOURCE_EXHAUSTED; with ``retry_after_s`` when waiting helps (the SDK then retries)."""
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, field, retry_after_s)


def quoted(value: str | bytes) -> str:
    """``repr`` of client input for an error message, cut to ``ECHO_CHARS`` characters."""
    text = repr(value[:ECHO_CHARS])
    return text + f" (first {ECHO_CHARS} of {len(value)})" if len(value) > ECHO_CHARS else text


def decode_utf8(data: bytes, field: str) -> str:
    """``data`` as text; INVALID_ARGUMENT naming the first bad byte when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid(f"{field} is not valid UTF-8 (byte {e.start}: {e.reason})", field) from None


_CODEC_STATUS = (   # (error type, status, what the message says), most specific first
    (codec_errors.TruncatedError, grpc.StatusCode.INVALID_ARGUMENT, "is truncated"),
    (codec_errors.MalformedError, grpc.StatusCode.INVALID_ARGUMENT, "is malformed"),
    (codec_errors.IntegrityError, grpc.StatusCode.DATA_LOSS, "failed its integrity check"),
    (codec_errors.UnknownModelError, grpc.StatusCode.NOT_FOUND, "names a model this server lacks"),
    (codec_errors.TooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED, "decodes past the size limit"),
    (codec_errors.CancelledError, grpc.StatusCode.DEADLINE_EXCEEDED, "took too long to decode"),
)


def codec_error(error: codec_errors.CodecError, what: str, field: str | None = None) -> ServiceError:
    """The status of a codec error about ``what`` (the request data it came from): the one place
    where the codec's error kinds become gRPC statuses."""
    for kind, code, says in _CODEC_STATUS:
        if isinstance(error, kind):
            return ServiceError(code, f"{what} {says}: {error}", field)
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"{what} does not decode: {error}", field)


def internal(where: str, error: BaseException) -> ServiceError:
    """A generic INTERNAL status for an unexpected failure; the details go to the log under a
    correlation id that the status quotes."""
    correlation = uuid.uuid4().hex[:16]
    log.error("%s failed [correlation id %s]", where, correlation, exc_info=error)
    return ServiceError(grpc.StatusCode.INTERNAL, f"internal error (correlation id {correlation})")


async def _abort(context: grpc.aio.ServicerContext, err: ServiceError):
    await context.abort_with_status(err.to_status())


def rpc_errors(handler):
    """Wraps a unary or streaming aio handler: ServiceError -> rich status; other errors -> INTERNAL."""
    name = handler.__qualname__

    if inspect.isasyncgenfunction(handler):
        @functools.wraps(handler)
        async def stream(self, request, context):
            try:
                async for item in handler(self, request, context):
                    yield item
            except ServiceError as e:
                await _abort(context, e)
            except codec_errors.CodecError as e:
                await _abort(context, codec_error(e, "the request data"))
            except LogUnavailable as e:
                await _abort(context, log_unavailable(e))
            except grpc.aio.AbortError:
                raise
            except Exception as e:  # noqa: BLE001 - any other failure is reported, the server goes on
                await _abort(context, internal(name, e))
        return stream

    @functools.wraps(handler)
    async def unary(self, request, context):
        try:
            return await handler(self, request, context)
        except ServiceError as e:
            await _abort(context, e)
        except codec_errors.CodecError as e:
            await _abort(context, codec_error(e, "the request data"))
        except LogUnavailable as e:
            await _abort(context, log_unavailable(e))
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001
            await _abort(context, internal(name, e))
    return unary


def log_unavailable(e: LogUnavailable) -> ServiceError:
    """UNAVAILABLE, with a retry delay: the channel log's cluster cannot be reached now."""
    return ServiceError(grpc.StatusCode.UNAVAILABLE, f"the channel log is unavailable: {e}",
                        retry_after_s=LOG_RETRY_S)
