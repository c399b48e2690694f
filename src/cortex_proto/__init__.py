"""Generated protobuf code for Cortex. Never edit by hand: run ``nox -s proto``.

* ``cortex_proto.cortex.v1``: betterproto2 messages and grpcio stubs (all of ``proto/``).
* ``cortex_proto._wire.cortex.v1.bus_pb2``: protoc/upb classes behind the bus codec.
"""
