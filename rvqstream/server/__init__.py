"""The rvqstream gRPC server (extra ``server``): codec and channel services over grpc.aio.

``create_server``, ``RvqServer`` and ``serve`` load on first use, so that ``ServerConfig`` (and
the ``rvqstream serve`` flags) work before the extra's packages are checked.
"""

from rvqstream.server.config import ServerConfig

__all__ = ["RvqServer", "ServerConfig", "create_server", "serve"]


def __getattr__(name: str):
    if name in ("RvqServer", "create_server", "serve"):
        from rvqstream.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'rvqstream.server' has no attribute {name!r}")
