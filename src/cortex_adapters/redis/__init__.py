"""Redis adapters: the memory fabric (``MemoryStore``) and the job store (``JobStore``).

They are held to the same contract suites as their in-memory twins
(``tests/contract``, parameter ``redis``). See ADR 0004 for the keys and the scripts.
"""

from cortex_adapters.redis.job_store import RedisJobStore
from cortex_adapters.redis.memory_store import RedisMemoryStore

__all__ = ["RedisJobStore", "RedisMemoryStore"]
