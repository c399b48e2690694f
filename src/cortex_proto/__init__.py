"""Generated protobuf code for Cortex. Never edit by hand: run ``nox -s proto``.

* ``cortex_proto.cortex.v1``: betterproto2 messages and grpcio stubs (all of ``proto/``).
* ``cortex_proto._wire.cortex.v1.bus_pb2``: protoc/upb classes behind the bus codec.
* ``cortex_proto._wire.cortex.v1.safety_pb2``: protoc/upb classes on the Safety Kernel's wire;
  importing it registers ``cortex/v1/safety.proto`` for gRPC server reflection.
* ``cortex_proto._wire.cortex.v1.api_pb2``: the same for ``cortex/v1/api.proto`` (``CortexApi``).
"""
