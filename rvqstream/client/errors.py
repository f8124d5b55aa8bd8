"""The SDK's one exception type."""

from __future__ import annotations

import grpc


class RvqstreamError(Exception):
    """Any failure of an rvqstream client call.

    ``code`` is the gRPC status name the server answered with ("NOT_FOUND", "INVALID_ARGUMENT",
    "UNAVAILABLE", ...) or, for failures found on this side, "DATA_LOSS" (a model or message
    failed verification) or "INVALID_ARGUMENT" (a bad argument); ``message`` says what was wrong.
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> RvqstreamError:
        return cls(error.code().name, error.details() or "")
