"""gRPC adapters: the front door, the Safety Kernel service and the scheduler's fail-closed
client for it.

* ``CortexApiServer`` serves ``cortex.v1.CortexApi`` (``SubmitJob``, ``GetJobStatus``) over
  the core's ``FrontDoor``, with API keys, health and reflection
  (``tests/contract/test_cortex_api.py``).
* ``SafetyKernelServer`` serves ``cortex.v1.SafetyKernel`` (``Check``, ``Explain``) on a
  ``grpc.aio`` server, with the standard health service and server reflection.
* ``GrpcSafetyChecker`` is the ``SafetyChecker`` port over that service: per-call deadline,
  fail closed, circuit breaker.

docs/adr/0007 has the design and the figures; ``tests/contract/test_safety_kernel.py`` runs
both on a real loopback socket.
"""

from cortex_adapters.grpc._breaker import BreakerState
from cortex_adapters.grpc._safety_wire import SERVICE_NAME, CheckCodecName
from cortex_adapters.grpc.cortex_api import CortexApiBindError, CortexApiServer
from cortex_adapters.grpc.safety_client import (
    INVALID_REQUEST_RULE,
    UNAVAILABLE_REASON,
    UNAVAILABLE_RULE,
    GrpcSafetyChecker,
    SafetyKernelError,
)
from cortex_adapters.grpc.safety_kernel import (
    DEFAULT_ADDRESS,
    CurrentPolicy,
    PolicySource,
    SafetyKernelBindError,
    SafetyKernelServer,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "INVALID_REQUEST_RULE",
    "SERVICE_NAME",
    "UNAVAILABLE_REASON",
    "UNAVAILABLE_RULE",
    "BreakerState",
    "CheckCodecName",
    "CortexApiBindError",
    "CortexApiServer",
    "CurrentPolicy",
    "GrpcSafetyChecker",
    "PolicySource",
    "SafetyKernelBindError",
    "SafetyKernelError",
    "SafetyKernelServer",
]
