"""``JobStore`` on Redis: one hash per job, sorted-set indexes, and Lua for every write.

Keys (``<ns>`` is the optional namespace, "" by default)::

    <ns>job:<job_id>                               hash: every field of the job (``_encode``)
    <ns>jobs:all                                   sorted set: every job
    <ns>jobs:status:<STATUS>                       sorted set: the jobs now in STATUS
    <ns>jobs:tenant:<tenant_id>:all                sorted set: every job of the tenant
    <ns>jobs:tenant:<tenant_id>:status:<STATUS>    sorted set: the tenant's jobs now in STATUS
    <ns>idem:<tenant_id>:<sha256 of the key>       string: the job id an idempotency key names

The tenant id goes into key names as it is: the no-auth tenant "" gives
``jobs:tenant::all``. That is unambiguous even for a tenant id holding ':' (real ones are
tokens of letters, digits, '_' and '-'), because what follows it is fixed (``:all``, or
``:status:`` and a status name, or ``:`` and 64 hex digits). The idempotency key itself, a
client's string of any characters, appears only as the hex SHA-256 of its UTF-8. It lives as
long as its job (no TTL) and is deleted with it by ``withdraw``.

Index members all have score 0 and are ``<16 hex digits>:<job_id>``, where the hex digits
are the bits of ``spec.created_at`` arranged so that string order is numeric order. So the
lexicographic order of members *is* the listing order (created_at, then job_id), and a page
cursor is simply the last member returned (or examined): ``ZREVRANGEBYLEX <index> (<cursor> -``
resumes exactly there, whatever was added or removed in between, in any index.

``create``, ``create_or_get``, ``transition`` and ``withdraw`` are one ``EVALSHA`` each (one
round trip; ``create_or_get`` reads the earlier job in a second one). The Lua scripts check,
write the hash and move the index members of the global and the tenant's indexes atomically,
so two stores on two clients (two scheduler replicas) can never both win a transition or both
save a job for one idempotency key, and the indexes never disagree with the hashes. Every
key a script touches is passed in ``KEYS``. Jobs written before the tenant indexes existed
are in neither tenant index: they show up in listings by tenant only once re-indexed.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from string import Template
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from cortex_adapters.redis._connection import CommandBatcher, check_namespace, connect
from cortex_core.jobs import JOB_CLASSES, Job, JobSpec, PendingJob
from cortex_core.messages import JobStatus, Priority
from cortex_core.ports import StatusFilter

_NULLABLE = ("worker_id", "result_ptr", "reason")
"""Mutable fields that may be None: absent from the hash when None."""

_STATUSES = tuple(JobStatus)

MIN_SCAN = 1000
SCAN_PER_ITEM = 10
"""A listing by topic (which no index covers) examines at most ``max(MIN_SCAN,
SCAN_PER_ITEM * limit)`` index members per call, then returns what it found with a cursor."""
_FIRST_CHUNK = 64
"""A topic scan reads at least this many members at first, then four times more each time."""

_WITHDRAWN = "withdrawn"
"""The one field of a withdrawn job's tombstone."""

_CREATE = """
-- KEYS[1] job hash; KEYS[2..5] the indexes: all, the status's, the tenant's all, the tenant's
-- status's; KEYS[6], if given: the tenant's idempotency key for the job
-- ARGV[1] index member, ARGV[2] job id, ARGV[3..] field, value, ...
-- Returns 1 (saved), 0 (the job id is taken), or the id of the job KEYS[6] already names.
if KEYS[6] then
  local earlier = redis.call('GET', KEYS[6])
  if earlier then
    return earlier
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
for i = 2, 5 do
  redis.call('ZADD', KEYS[i], 0, ARGV[1])
end
if KEYS[6] then
  redis.call('SET', KEYS[6], ARGV[2])
end
return 1
"""

_SPEC_CHECK = """
if stored[3] ~= ARGV[4] or stored[4] ~= ARGV[5] then
  return redis.error_reply('cortex: ' .. KEYS[1] .. ': the job given is not the job stored '
    .. '(tenant_id or created_at differ)')
end
"""

_WITHDRAW = (
    """
-- KEYS[1] job hash; KEYS[2..5] the indexes: all, the status's, the tenant's all, the tenant's
-- status's; KEYS[6], if given: the tenant's idempotency key for the job
-- ARGV[1] the version the hash must hold, ARGV[2] its status, ARGV[3] index member,
-- ARGV[4] tenant id, ARGV[5] created_at, ARGV[6] job id
local stored = redis.call('HMGET', KEYS[1], 'version', 'status', 'tenant_id', 'created_at')
if stored[1] ~= ARGV[1] then
  return 0
end
if stored[2] ~= ARGV[2] then
  return redis.error_reply('cortex: ' .. KEYS[1] .. ': version ' .. ARGV[1] .. ' is '
    .. tostring(stored[2]) .. ', not ' .. ARGV[2])
end
"""
    + _SPEC_CHECK
    + """
-- A tombstone stays for a day, so that the id can never be created again: a submit whose
-- publish was reported failed but went out after all is then not adopted by a scheduler.
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'withdrawn', '1')
redis.call('EXPIRE', KEYS[1], 86400)
for i = 2, 5 do
  redis.call('ZREM', KEYS[i], ARGV[3])
end
if KEYS[6] and redis.call('GET', KEYS[6]) == ARGV[6] then
  redis.call('DEL', KEYS[6])
end
return 1
"""
)

_TRANSITION = Template(
    """
-- KEYS[1] job hash, KEYS[2..] the status indexes at the positions in SLOT, then the tenant's
-- status indexes, each N positions after the global one of its status
-- ARGV[1] the version the hash must hold, ARGV[2] the new status, ARGV[3] index member,
-- ARGV[4] tenant id, ARGV[5] created_at, ARGV[6..] field, value, ... (the mutable fields
-- that are not None)
local SLOT, N = {$slots}, $count
local stored = redis.call('HMGET', KEYS[1], 'version', 'status', 'tenant_id', 'created_at')
if stored[1] ~= ARGV[1] then
  return 0
end
local from, to = SLOT[stored[2]], SLOT[ARGV[2]]
if not from or not to then
  return redis.error_reply('cortex: ' .. KEYS[1] .. ': unknown status in transition '
    .. tostring(stored[2]) .. ' -> ' .. ARGV[2])
end
"""
    + _SPEC_CHECK
    + """
redis.call('HDEL', KEYS[1], $nullable)
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if from ~= to then
  redis.call('ZREM', KEYS[from], ARGV[3])
  redis.call('ZADD', KEYS[to], 0, ARGV[3])
  redis.call('ZREM', KEYS[from + N], ARGV[3])
  redis.call('ZADD', KEYS[to + N], 0, ARGV[3])
end
return 1
"""
).substitute(
    slots=", ".join(f"{s.value} = {i}" for i, s in enumerate(_STATUSES, start=2)),
    count=len(_STATUSES),
    nullable=", ".join(f"'{name}'" for name in _NULLABLE),
)

_CURSOR = re.compile(r"[0-9a-f]{16}:.+", re.DOTALL)

_EARLIER_TRIES = 3
"""``create_or_get`` reads the earlier job after the script names it; if that job was withdrawn
in between, the key is free again and the call starts over, at most this many times."""


class RedisJobStore:
    """Jobs in Redis, rebuilt exactly (None, labels and floats round-trip) through
    ``JOB_CLASSES[status]``.

    Commands are never retried by the client: a retried compare-and-set whose first try did
    land would answer False for a write that won. A connection failure raises instead.
    """

    def __init__(self, *, url: str, namespace: str = "") -> None:
        self._url = url
        self._ns = check_namespace(namespace)
        self._all = f"{self._ns}jobs:all"
        self._by_status = {s: f"{self._ns}jobs:status:{s.value}" for s in _STATUSES}
        self._status_keys = [self._by_status[s] for s in _STATUSES]
        self._client: aioredis.Redis | None = None
        self._create: AsyncScript | None = None
        self._transition: AsyncScript | None = None
        self._withdraw: AsyncScript | None = None
        self._batch: CommandBatcher | None = None

    async def start(self) -> None:
        """Connect, PING and load the scripts; ``ConnectionError`` naming the URL on failure."""
        if self._client is not None:
            return
        client = await connect(
            self._url, what="RedisJobStore", decode_responses=True, retry_commands=False
        )
        scripts = [client.register_script(s) for s in (_CREATE, _TRANSITION, _WITHDRAW)]
        try:
            for script in scripts:
                await client.script_load(script.script)  # so the first EVALSHA finds it
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self._batch = CommandBatcher(client)
        self._create, self._transition, self._withdraw = scripts

    async def close(self) -> None:
        client, self._client = self._client, None
        self._create = self._transition = self._withdraw = None
        self._batch = None
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        """PING on the store's own connection: raises while Redis does not answer (for
        readiness probes; the caller bounds the wait)."""
        await self._started().ping()

    def _started(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisJobStore is not started: call start() first")
        return self._client

    def _script(self, script: AsyncScript | None) -> AsyncScript:
        if script is None:
            raise RuntimeError("RedisJobStore is not started: call start() first")
        return script

    def _batcher(self) -> CommandBatcher:
        if self._batch is None:
            raise RuntimeError("RedisJobStore is not started: call start() first")
        return self._batch

    async def _run(self, script: AsyncScript | None, keys: list[str], args: list[str]) -> Any:
        """EVALSHA ``script``, batched with whatever else is sent now (``CommandBatcher``);
        a Redis that lost its scripts (restarted, flushed) gets it loaded again."""
        loaded = self._script(script)
        try:
            return await self._batcher().call("EVALSHA", loaded.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await loaded(keys=keys, args=args)

    # -- key names ---------------------------------------------------------------------

    def _key(self, job_id: str) -> str:
        return f"{self._ns}job:{job_id}"

    def _tenant_all(self, tenant_id: str) -> str:
        return f"{self._ns}jobs:tenant:{tenant_id}:all"

    def _tenant_status(self, tenant_id: str, status: JobStatus) -> str:
        return f"{self._ns}jobs:tenant:{tenant_id}:status:{status.value}"

    def _idempotency_key(self, spec: JobSpec) -> str:
        digest = hashlib.sha256(spec.idempotency_key.encode("utf-8", "surrogatepass"))
        return f"{self._ns}idem:{spec.tenant_id}:{digest.hexdigest()}"

    def _indexes_of(self, job: PendingJob) -> list[str]:
        """The four indexes a new job is in: all, its status's, and the tenant's two."""
        tenant = job.spec.tenant_id
        return [
            self._all,
            self._by_status[job.status],
            self._tenant_all(tenant),
            self._tenant_status(tenant, job.status),
        ]

    def _indexes(self, statuses: frozenset[JobStatus] | None, tenant_id: str | None) -> list[str]:
        """The indexes whose union is the jobs in ``statuses`` (None: any) of ``tenant_id``."""
        if statuses is None or statuses.issuperset(_STATUSES):
            return [self._all if tenant_id is None else self._tenant_all(tenant_id)]
        ordered = sorted(statuses)
        if tenant_id is None:
            return [self._by_status[s] for s in ordered]
        return [self._tenant_status(tenant_id, s) for s in ordered]

    # -- writes ------------------------------------------------------------------------

    async def create(self, job: PendingJob) -> bool:
        """One EVALSHA: write the hash and index it, only if ``job:<id>`` does not exist."""
        keys = [self._key(job.job_id), *self._indexes_of(job)]
        args = [_member(job), job.job_id, *_flatten(_encode(job))]
        return int(await self._run(self._create, keys, args)) == 1

    async def create_or_get(self, job: PendingJob) -> Job:
        """One EVALSHA when the job is saved (or its id is taken), which also claims the
        idempotency key; a second round trip (``HGETALL``) to read the earlier job otherwise."""
        create = self._script(self._create)
        keys = [self._key(job.job_id), *self._indexes_of(job)]
        if job.spec.idempotency_key:
            keys.append(self._idempotency_key(job.spec))
        args = [_member(job), job.job_id, *_flatten(_encode(job))]
        for _ in range(_EARLIER_TRIES):
            answer = await create(keys=keys, args=args)
            if answer == 1:
                return job
            if answer == 0:
                raise ValueError(f"job id {job.job_id!r} is taken")
            earlier = await self.get(_text(answer))
            if earlier is not None:
                return earlier
        raise RuntimeError(
            f"{keys[-1]} names job {_text(answer)!r}, which is not there: "
            "an idempotency key that outlived its job"
        )

    async def withdraw(self, job: PendingJob) -> bool:
        """One EVALSHA: if the hash still holds ``job.version``, delete it, its index members
        and its idempotency key (if the key still names this job)."""
        withdraw = self._script(self._withdraw)
        keys = [self._key(job.job_id), *self._indexes_of(job)]
        if job.spec.idempotency_key:
            keys.append(self._idempotency_key(job.spec))
        args = [
            str(job.version),
            job.status.value,
            _member(job),
            job.spec.tenant_id,
            repr(job.spec.created_at),
            job.job_id,
        ]
        return int(await withdraw(keys=keys, args=args)) == 1

    async def transition(self, job: Job) -> bool:
        """One EVALSHA: if the hash holds ``job.version - 1``, write the mutable fields and move
        the job to the indexes of its new status (the global one and its tenant's)."""
        tenant = job.spec.tenant_id
        keys = [
            self._key(job.job_id),
            *self._status_keys,
            *(self._tenant_status(tenant, s) for s in _STATUSES),
        ]
        args = [
            str(job.version - 1),
            job.status.value,
            _member(job),
            tenant,
            repr(job.spec.created_at),
            *_flatten(_encode(job, spec=False)),
        ]
        return int(await self._run(self._transition, keys, args)) == 1

    # -- reads -------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        key = self._key(job_id)
        fields = _texts(await self._batcher().call("HGETALL", key))
        return _decode(key, fields) if fields and _WITHDRAWN not in fields else None

    async def list_jobs(
        self,
        *,
        status: StatusFilter = None,
        tenant_id: str | None = None,
        topic: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Two round trips without ``topic``: the next ``limit + 1`` members of the index (of
        each status's index, in one transaction, merged), then their hashes (pipelined).

        With ``topic``, which no index covers, those two round trips repeat on ever larger
        chunks (``_FIRST_CHUNK``, then four times more) until the page is full, the index ends, or
        ``max(MIN_SCAN, SCAN_PER_ITEM * limit)`` members have been examined: then the page
        may be short (even empty) and its cursor is the last member examined.
        """
        client = self._started()
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if cursor is not None and _CURSOR.fullmatch(cursor) is None:
            raise ValueError(f"invalid cursor {cursor!r}: not in the form this job store issues")
        statuses = _statuses(status)
        if statuses is not None and not statuses:
            return [], None
        indexes = self._indexes(statuses, tenant_id)

        def wanted(job: Job) -> bool:  # a job that moved on between the reads is left out
            return (
                (statuses is None or job.status in statuses)
                and (tenant_id is None or job.spec.tenant_id == tenant_id)
                and (topic is None or job.spec.topic == topic)
            )

        budget = limit if topic is None else max(MIN_SCAN, SCAN_PER_ITEM * limit)
        chunk = limit if topic is None else max(limit, _FIRST_CHUNK)
        page: list[Job] = []
        examined = 0
        top = "+" if cursor is None else f"({cursor}"
        while True:
            n = min(max(limit - len(page), chunk), budget - examined)
            members, more = await _next_members(client, indexes, top, n)
            jobs = await self._jobs_at(client, members)
            for i, (member, job) in enumerate(zip(members, jobs, strict=True)):
                if job is not None and wanted(job):
                    page.append(job)
                    if len(page) == limit:
                        return page, (member if more or i < len(members) - 1 else None)
            if not more:
                return page, None
            examined += len(members)
            top = f"({members[-1]}"
            if examined >= budget:
                return page, members[-1]
            chunk *= 4

    async def _jobs_at(self, client: aioredis.Redis, members: Sequence[str]) -> list[Job | None]:
        """The jobs of index members, in one pipelined round trip (None: no longer there)."""
        if not members:
            return []
        keys = [self._key(_job_id(m)) for m in members]
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            rows = await pipe.execute()
        texts = [_texts(row) for row in rows]
        return [
            _decode(key, row) if row and _WITHDRAWN not in row else None
            for key, row in zip(keys, texts, strict=True)
        ]


async def _next_members(
    client: aioredis.Redis, indexes: Sequence[str], top: str, n: int
) -> tuple[list[str], bool]:
    """The first ``n`` members below ``top`` of the union of ``indexes``, newest first, and
    whether there are more: one round trip (a transaction, for more than one index, so that a
    job moving between them is seen in exactly one)."""
    if len(indexes) == 1:
        found = [await client.zrevrangebylex(indexes[0], top, "-", start=0, num=n + 1)]
    else:
        async with client.pipeline(transaction=True) as pipe:
            for index in indexes:
                pipe.zrevrangebylex(index, top, "-", start=0, num=n + 1)
            found = await pipe.execute()
    runs = ([_text(m) for m in run] for run in found)
    merged = list(islice(_distinct(heapq.merge(*runs, reverse=True)), n + 1))
    return merged[:n], len(merged) > n


def _distinct(members: Iterable[str]) -> Iterator[str]:
    last = None
    for member in members:
        if member != last:
            yield member
        last = member


def _statuses(status: StatusFilter) -> frozenset[JobStatus] | None:
    if status is None:
        return None
    if isinstance(status, frozenset):
        return frozenset(JobStatus(s) for s in status)
    return frozenset({JobStatus(status)})


def _encode(job: Job, *, spec: bool = True) -> dict[str, str]:
    """The hash fields of ``job`` (or only its mutable ones). None is an absent field; floats
    are ``repr``s, which ``float()`` reads back exactly."""
    fields = {
        "status": job.status.value,
        "version": str(job.version),
        "updated_at": repr(job.updated_at),
        "attempts": str(job.attempts),
    }
    for name in _NULLABLE:
        value: str | None = getattr(job, name)
        if value is not None:
            fields[name] = value
    if spec:
        s = job.spec
        fields |= {
            "job_id": s.job_id,
            "trace_id": s.trace_id,
            "topic": s.topic,
            "context_ptr": s.context_ptr,
            "created_at": repr(s.created_at),
            "priority": s.priority.value,
            "adapter_id": s.adapter_id,
            "tenant_id": s.tenant_id,
            "labels": json.dumps(dict(s.labels), ensure_ascii=False, separators=(",", ":")),
            "prompt_bytes": str(s.prompt_bytes),
            "idempotency_key": s.idempotency_key,
            "retry_of": s.retry_of,
        }
        if s.deadline is not None:
            fields["deadline"] = repr(s.deadline)
        if s.timeout_s is not None:
            fields["timeout_s"] = repr(s.timeout_s)
    return fields


def _decode(key: str, fields: Mapping[str, str]) -> Job:
    """The job a hash written by ``_encode`` holds; ``ValueError`` naming the key otherwise.
    Fields added since the first records (``prompt_bytes``, ``timeout_s``,
    ``idempotency_key``, ``retry_of``) take their defaults when absent."""

    def field(name: str) -> str:
        try:
            return fields[name]
        except KeyError:
            raise ValueError(f"no field {name!r}") from None

    def optional_float(name: str) -> float | None:
        value = fields.get(name)
        return None if value is None else float(value)

    try:
        spec = JobSpec(
            job_id=field("job_id"),
            trace_id=field("trace_id"),
            topic=field("topic"),
            context_ptr=field("context_ptr"),
            created_at=float(field("created_at")),
            priority=Priority(field("priority")),
            adapter_id=field("adapter_id"),
            tenant_id=field("tenant_id"),
            labels=_labels(field("labels")),
            deadline=optional_float("deadline"),
            prompt_bytes=int(fields.get("prompt_bytes", "0")),
            timeout_s=optional_float("timeout_s"),
            idempotency_key=fields.get("idempotency_key", ""),
            retry_of=fields.get("retry_of", ""),
        )
        return JOB_CLASSES[JobStatus(field("status"))](
            spec=spec,
            updated_at=float(field("updated_at")),
            version=int(field("version")),
            attempts=int(field("attempts")),
            worker_id=fields.get("worker_id"),
            result_ptr=fields.get("result_ptr"),
            reason=fields.get("reason"),
        )
    except ValueError as exc:
        raise ValueError(f"{key} is not a job record Cortex can read: {exc}") from exc


def _labels(text: str) -> dict[str, str]:
    labels = json.loads(text)
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ValueError(f"labels {text!r} is not a JSON object of strings")
    return labels


def _flatten(fields: Mapping[str, str]) -> list[str]:
    return [part for item in fields.items() for part in item]


def _member(job: Job) -> str:
    """The job's index member: ``<created_at, ordered as text>:<job_id>``."""
    return f"{_ordered_hex(job.spec.created_at)}:{job.job_id}"


def _job_id(member: str) -> str:
    return member[17:]


def _ordered_hex(x: float) -> str:
    """16 hex digits whose string order is the numeric order of ``x``: the IEEE 754 bits with
    the sign bit set for x ≥ 0, all bits inverted for x < 0 (so -0.0 sorts as 0.0)."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", x + 0.0))
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
    return f"{bits:016x}"


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()


def _texts(row: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in row.items()}
