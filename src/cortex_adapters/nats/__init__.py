"""NATS adapter of the ``Bus`` port: JetStream (at least once) for the job subjects, core NATS
(at most once) for heartbeats, or core NATS for everything with ``durable=False``.

Held to the same contract suite as ``InMemoryBus`` (``tests/contract``, parameters ``nats`` and
``nats-core``). docs/adr/0005 has the design and the delivery guarantee of each subject.
"""

from cortex_adapters.nats._names import stream_name
from cortex_adapters.nats.bus import BusClosed, BusConnectError, BusPublishError, NatsBus

__all__ = ["BusClosed", "BusConnectError", "BusPublishError", "NatsBus", "stream_name"]
