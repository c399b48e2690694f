"""Read a safety policy file (YAML) into the core's ``Policy``, and follow it as it changes.

``load_policy`` reads once. ``ReloadingPolicy`` reads at construction (a broken file fails the
start) and then polls the file: a valid new version replaces the policy in force, a broken one is
logged and ignored until the file changes again. Polling is stdlib only and works the same on
every filesystem, including the symlink swaps of a Kubernetes ConfigMap (ADR 0006).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import yaml

try:  # libyaml when PyYAML was built with it: parsing is ~7x faster (ADR 0006)
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - a PyYAML without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

from cortex_core.errors import ConfigError
from cortex_core.policy import Policy

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.yaml")

log = logging.getLogger("cortex.safety")

_RACY_NS = 2_000_000_000
"""A file modified this close to when it was last read may change again without its
``(mtime_ns, size)`` changing (coarse timestamps): until it is older, it is re-hashed on every poll.
"""


class _StrictLoader(_SafeLoader):
    """A safe loader (libyaml's when present) that rejects a key given twice in one mapping.

    YAML keeps the last one, silently: in a policy, a second ``decision:`` would quietly win.
    """


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        with contextlib.suppress(TypeError):  # an unhashable key: the constructor reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse(data: bytes, file: Path) -> Policy:
    try:
        doc = yaml.load(data, Loader=_StrictLoader)  # a safe loader, strict about duplicates
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), f"not valid YAML: {exc}") from exc
    try:
        return Policy.from_document(doc)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc.path}", exc.problem) from exc


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise ConfigError(str(file), f"cannot read: {exc.strerror or exc}") from exc


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate ``path`` (the shipped default when None). Errors name file, rule and
    field: ``policy.yaml: policy.rules[2] (deny-big).max_prompt_bytes: must be ...``."""
    file = Path(path) if path is not None else DEFAULT_POLICY_FILE
    return _parse(_read(file), file)


class _Seen(NamedTuple):
    """What ``stat`` says about the file: a change in any of these is a change to look at."""

    ino: int
    mtime_ns: int
    size: int


def _stat(file: Path) -> _Seen:
    try:
        st = file.stat()
    except OSError as exc:
        raise ConfigError(str(file), f"cannot read: {exc.strerror or exc}") from exc
    return _Seen(st.st_ino, st.st_mtime_ns, st.st_size)


class ReloadingPolicy:
    """The policy in a file, reloaded when the file changes; ``current`` is the one in force.

    Validated at construction: a broken file raises ``ConfigError``. After ``start()`` a
    background task checks the file every ``interval_s`` seconds (``stat``, then a content hash
    when ``stat`` changed), so an unchanged file costs one ``stat`` per poll. A new version that
    does not validate is logged (a warning, once per version) and the last good policy stays in
    force. ``version`` counts the policies applied (1 after construction).
    """

    def __init__(self, path: str | Path | None = None, *, interval_s: float = 1.0) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self._path = Path(path) if path is not None else DEFAULT_POLICY_FILE
        self._interval_s = interval_s
        self._lock = threading.Lock()  # one check at a time (checks run in worker threads)
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

        seen = _stat(self._path)
        data = _read(self._path)
        self._policy = _parse(data, self._path)
        self._seen = seen
        self._read_at_ns = time.time_ns()
        self._digest = hashlib.sha256(data).digest()
        self._failed: object = None  # what the last reported failure was about (log it once)
        self._version = 1
        self._loaded_at = time.time()
        log.info("policy_loaded", extra=self._fields(rules=len(self._policy.rules)))

    @property
    def current(self) -> Policy:
        """The policy in force (the last file that validated)."""
        return self._policy

    @property
    def path(self) -> Path:
        return self._path

    @property
    def version(self) -> int:
        """1 after construction, +1 for each new policy applied."""
        return self._version

    @property
    def loaded_at(self) -> float:
        """When the policy in force was applied, Unix epoch seconds."""
        return self._loaded_at

    async def start(self) -> None:
        """Begin polling the file in the background (idempotent)."""
        if self._task is not None:
            return
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._poll(self._stopping), name=f"policy:{self._path}")

    async def close(self) -> None:
        """Stop polling; waits for a check in progress to finish."""
        task, stopping = self._task, self._stopping
        self._task = self._stopping = None
        if task is None or stopping is None:
            return
        stopping.set()
        await task

    async def reload(self) -> bool:
        """Check the file now: True if a new policy was applied. Never raises for a bad file."""
        return await asyncio.to_thread(self._check, True)

    async def _poll(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self._interval_s)
                return
            try:
                await asyncio.to_thread(self._check, False)
            except Exception:  # a bug must not stop the reloading: log it and poll on
                log.exception("policy_check_failed", extra=self._fields())

    def _check(self, force: bool) -> bool:
        with self._lock:
            try:
                seen = _stat(self._path)
                racy = seen.mtime_ns + _RACY_NS >= self._read_at_ns
                if not force and seen == self._seen and not racy:
                    return False
                data = _read(self._path)
            except ConfigError as exc:
                self._report(exc, about=exc.problem)
                return False
            self._seen = seen
            self._read_at_ns = time.time_ns()
            digest = hashlib.sha256(data).digest()
            if digest == self._digest:
                if self._failed is not None:
                    self._failed = None
                    log.info("policy_file_restored", extra=self._fields(version=self._version))
                return False
            if digest == self._failed:
                return False
            try:
                policy = _parse(data, self._path)
            except ConfigError as exc:
                self._report(exc, about=digest)
                return False
            self._policy = policy
            self._digest = digest
            self._failed = None
            self._version += 1
            self._loaded_at = time.time()
        log.info(
            "policy_reloaded", extra=self._fields(rules=len(policy.rules), version=self._version)
        )
        return True

    def _report(self, exc: ConfigError, *, about: object) -> None:
        if about == self._failed:
            return
        self._failed = about
        log.warning(
            "policy_reload_rejected", extra=self._fields(error=str(exc), version=self._version)
        )

    def _fields(self, **more: object) -> dict[str, object]:
        return {"component": "safety", "path": str(self._path), **more}
