"""Rich gRPC errors: a ServiceError raised anywhere in a handler becomes a google.rpc.Status.

Handlers are wrapped with :func:`rpc_errors`; the status carries the code, a message that says what
was wrong and, for bad fields, a ``google.rpc.BadRequest`` detail naming the field.
"""

from __future__ import annotations

import functools
import inspect
import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An RPC failure with a gRPC status code; ``field`` names the offending request field."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field

    def to_status(self) -> grpc.Status:
        details = []
        if self.field is not None:
            bad = error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(
                    field=self.field, description=self.message)])
            detail = any_pb2.Any()
            detail.Pack(bad)
            details.append(detail)
        status = status_pb2.Status(code=getattr(code_pb2, self.code.name), message=self.message,
                                   details=details)
        return rpc_status.to_status(status)


def invalid(message: str, field: str | None = None) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message, field)


def decode_utf8(data: bytes, field: str) -> str:
    """``data`` as text; INVALID_ARGUMENT naming the first bad byte when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid(f"{field} is not valid UTF-8 (byte {e.start}: {e.reason})", field) from None


async def _abort(context: grpc.aio.ServicerContext, err: ServiceError):
    await context.abort_with_status(err.to_status())


def rpc_errors(handler):
    """Wraps a unary or streaming aio handler: ServiceError -> rich status; other errors -> INTERNAL."""
    name = handler.__qualname__

    def unexpected(e: Exception) -> ServiceError:
        log.exception("%s failed", name)
        return ServiceError(grpc.StatusCode.INTERNAL, f"{name}: internal error: {type(e).__name__}: {e}")

    if inspect.isasyncgenfunction(handler):
        @functools.wraps(handler)
        async def stream(self, request, context):
            try:
                async for item in handler(self, request, context):
                    yield item
            except ServiceError as e:
                await _abort(context, e)
            except grpc.aio.AbortError:
                raise
            except Exception as e:  # noqa: BLE001 - any other failure is reported, the server goes on
                await _abort(context, unexpected(e))
        return stream

    @functools.wraps(handler)
    async def unary(self, request, context):
        try:
            return await handler(self, request, context)
        except ServiceError as e:
            await _abort(context, e)
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001
            await _abort(context, unexpected(e))
    return unary
