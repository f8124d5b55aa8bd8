"""The rvqstream gRPC server (extra ``server``): codec and channel services over grpc.aio."""

from rvqstream.server.app import RvqServer, create_server, serve
from rvqstream.server.config import ServerConfig

__all__ = ["RvqServer", "ServerConfig", "create_server", "serve"]
