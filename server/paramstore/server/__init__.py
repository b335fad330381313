"""The paramstore gRPC server: named parameter stores in memory, safetensors snapshots on disk.

`create_server(address, ...) -> (server, port)`, `serve(address, ...)`, `main(argv)` (the
`paramstore serve` flags). The domain (`registry`, `stores`, `snapshots`) knows nothing of gRPC;
`servicer` adapts it to the wire contract in `paramstore.proto.v1`.
"""

from paramstore.server.app import ParamStoreServer, create_server, main, serve

__all__ = ["ParamStoreServer", "create_server", "main", "serve"]
