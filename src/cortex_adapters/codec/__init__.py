"""``PacketCodec`` adapters. ``ProtobufCodec`` (upb) is the one on the wire;
``BetterprotoCodec`` gives the same bytes through betterproto2's typed messages."""

from cortex_adapters.codec.betterproto import BetterprotoCodec
from cortex_adapters.codec.protobuf import ProtobufCodec

__all__ = ["BetterprotoCodec", "ProtobufCodec"]
