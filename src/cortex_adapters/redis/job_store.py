"""``JobStore`` on Redis: one hash per job, sorted-set indexes, and Lua for every write.

Keys (``<ns>`` is the optional namespace, "" by default)::

    <ns>job:<job_id>          hash: every field of the job (see ``_encode``)
    <ns>jobs:all              sorted set: every job
    <ns>jobs:status:<STATUS>  sorted set: the jobs now in STATUS, one set per JobStatus

Index members all have score 0 and are ``<16 hex digits>:<job_id>``, where the hex digits
are the bits of ``spec.created_at`` arranged so that string order is numeric order. So the
lexicographic order of members *is* the listing order (created_at, then job_id), and a page
cursor is simply the last member returned: ``ZREVRANGEBYLEX <index> (<cursor> -`` resumes
exactly there, whatever was added or removed in between.

``create`` and ``transition`` are one ``EVALSHA`` each (one round trip): the Lua script checks,
writes the hash and moves the index members atomically, so two stores on two clients (two
scheduler replicas) can never both win a transition, and the indexes never disagree with
the hashes.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from string import Template

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from cortex_adapters.redis._connection import check_namespace, connect
from cortex_core.jobs import JOB_CLASSES, Job, JobSpec, PendingJob
from cortex_core.messages import JobStatus, Priority

_NULLABLE = ("worker_id", "result_ptr", "reason")
"""Mutable fields that may be None: absent from the hash when None."""

_STATUSES = tuple(JobStatus)

_CREATE = """
-- KEYS[1] job hash, KEYS[2] index of all jobs, KEYS[3] index of the job's status
-- ARGV[1] index member, ARGV[2..] field, value, ...
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return 1
"""

_TRANSITION = Template("""
-- KEYS[1] job hash, KEYS[2..] the status indexes, at the positions in SLOT
-- ARGV[1] the version the hash must hold, ARGV[2] the new status, ARGV[3] index member,
-- ARGV[4..] field, value, ... (the mutable fields that are not None)
local SLOT = {$slots}
local stored = redis.call('HMGET', KEYS[1], 'version', 'status')
if stored[1] ~= ARGV[1] then
  return 0
end
local from, to = SLOT[stored[2]], SLOT[ARGV[2]]
if not from or not to then
  return redis.error_reply('cortex: ' .. KEYS[1] .. ': unknown status in transition '
    .. tostring(stored[2]) .. ' -> ' .. ARGV[2])
end
redis.call('HDEL', KEYS[1], $nullable)
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if from ~= to then
  redis.call('ZREM', KEYS[from], ARGV[3])
  redis.call('ZADD', KEYS[to], 0, ARGV[3])
end
return 1
""").substitute(
    slots=", ".join(f"{s.value} = {i}" for i, s in enumerate(_STATUSES, start=2)),
    nullable=", ".join(f"'{name}'" for name in _NULLABLE),
)

_CURSOR = re.compile(r"[0-9a-f]{16}:.+", re.DOTALL)


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

    async def start(self) -> None:
        """Connect, PING and load the scripts; ``ConnectionError`` naming the URL on failure."""
        if self._client is not None:
            return
        client = await connect(
            self._url, what="RedisJobStore", decode_responses=True, retry_commands=False
        )
        create = client.register_script(_CREATE)
        transition = client.register_script(_TRANSITION)
        try:
            for script in (create, transition):
                await client.script_load(script.script)  # so the first EVALSHA finds it
        except BaseException:
            await client.aclose()
            raise
        self._client, self._create, self._transition = client, create, transition

    async def close(self) -> None:
        client, self._client = self._client, None
        self._create = self._transition = None
        if client is not None:
            await client.aclose()

    def _started(self) -> tuple[aioredis.Redis, AsyncScript, AsyncScript]:
        if self._client is None or self._create is None or self._transition is None:
            raise RuntimeError("RedisJobStore is not started: call start() first")
        return self._client, self._create, self._transition

    def _key(self, job_id: str) -> str:
        return f"{self._ns}job:{job_id}"

    async def create(self, job: PendingJob) -> bool:
        """One EVALSHA: write the hash and index it, only if ``job:<id>`` does not exist."""
        _, create, _ = self._started()
        fields = _flatten(_encode(job))
        keys = [self._key(job.job_id), self._all, self._by_status[job.status]]
        return int(await create(keys=keys, args=[_member(job), *fields])) == 1

    async def get(self, job_id: str) -> Job | None:
        client, _, _ = self._started()
        key = self._key(job_id)
        fields = await client.hgetall(key)
        return _decode(key, _texts(fields)) if fields else None

    async def transition(self, job: Job) -> bool:
        """One EVALSHA: if the hash holds ``job.version - 1``, write the mutable fields and move
        the job to the index of its new status."""
        _, _, transition = self._started()
        fields = _flatten(_encode(job, spec=False))
        keys = [self._key(job.job_id), *self._status_keys]
        args = [str(job.version - 1), job.status.value, _member(job), *fields]
        return int(await transition(keys=keys, args=args)) == 1

    async def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Job], str | None]:
        """Two round trips: one page of index members, then their hashes (pipelined)."""
        client, _, _ = self._started()
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if cursor is not None and _CURSOR.fullmatch(cursor) is None:
            raise ValueError(f"invalid cursor {cursor!r}: not in the form this job store issues")
        index = self._all if status is None else self._by_status[JobStatus(status)]
        top = "+" if cursor is None else f"({cursor}"
        found = await client.zrevrangebylex(index, top, "-", start=0, num=limit + 1)
        members = [_text(m) for m in found[:limit]]
        if not members:
            return [], None
        keys = [self._key(_job_id(m)) for m in members]
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            rows = await pipe.execute()
        jobs = [_decode(key, _texts(row)) for key, row in zip(keys, rows, strict=True) if row]
        if status is not None:  # a job that moved on between the two reads is left out
            jobs = [j for j in jobs if j.status == status]
        return jobs, (members[-1] if len(found) > limit else None)


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
        }
        if s.deadline is not None:
            fields["deadline"] = repr(s.deadline)
    return fields


def _decode(key: str, fields: Mapping[str, str]) -> Job:
    """The job a hash written by ``_encode`` holds; ``ValueError`` naming the key otherwise."""

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
