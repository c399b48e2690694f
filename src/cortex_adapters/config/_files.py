"""Configuration files: strict YAML parsing, and following a file as it changes.

``ReloadingFile`` reads its file at construction (a broken file fails the start) and then polls
it: a valid new version replaces the one in force, a broken one is logged (once per version)
and ignored until the file changes again. Polling is stdlib only and works the same on every
filesystem, including the symlink swaps of a Kubernetes ConfigMap (ADR 0006). The safety
policy and the routing table are both followed this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import yaml

try:  # libyaml when PyYAML was built with it: parsing is ~7x faster (ADR 0006)
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - a PyYAML without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

from cortex_core.errors import ConfigError

T = TypeVar("T")

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


def parse_yaml(data: bytes, file: Path, validate: Callable[[object], T]) -> T:
    """YAML (strict about duplicate keys) handed to ``validate``; errors name file and field."""
    try:
        doc = yaml.load(data, Loader=_StrictLoader)  # a safe loader, strict about duplicates
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), f"not valid YAML: {exc}") from exc
    try:
        return validate(doc)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc.path}", exc.problem) from exc


def read_file(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise ConfigError(str(file), f"cannot read: {exc.strerror or exc}") from exc


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


class ReloadingFile(Generic[T]):
    """A configuration file, reloaded when it changes; ``current`` is the version in force.

    Validated at construction: a broken file raises ``ConfigError``. After ``start()`` a
    background task checks the file every ``interval_s`` seconds (``stat``, then a content hash
    when ``stat`` changed), so an unchanged file costs one ``stat`` per poll. A new version that
    does not validate is logged (a warning, once per version) and the last good one stays in
    force. ``version`` counts the versions applied (1 after construction). Log events are
    ``<kind>_loaded``, ``<kind>_reloaded``, ``<kind>_reload_rejected``, ``<kind>_file_restored``.
    """

    def __init__(
        self,
        path: Path,
        *,
        parse: Callable[[bytes, Path], T],
        interval_s: float,
        kind: str,
        logger: logging.Logger,
        component: str,
        describe: Callable[[T], Mapping[str, object]],
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self._parse = parse
        self._kind = kind
        self._log = logger
        self._component = component
        self._describe = describe
        self._path = path
        self._interval_s = interval_s
        self._lock = threading.Lock()  # one check at a time (checks run in worker threads)
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

        seen = _stat(self._path)
        data = read_file(self._path)
        self._current = parse(data, self._path)
        self._seen = seen
        self._read_at_ns = time.time_ns()
        self._digest = hashlib.sha256(data).digest()
        self._failed: object = None  # what the last reported failure was about (log it once)
        self._version = 1
        self._loaded_at = time.time()
        self._log.info(f"{kind}_loaded", extra=self._fields(**describe(self._current)))

    @property
    def current(self) -> T:
        """The version in force (the last file that validated)."""
        return self._current

    @property
    def path(self) -> Path:
        return self._path

    @property
    def version(self) -> int:
        """1 after construction, +1 for each new version applied."""
        return self._version

    @property
    def loaded_at(self) -> float:
        """When the version in force was applied, Unix epoch seconds."""
        return self._loaded_at

    async def start(self) -> None:
        """Begin polling the file in the background (idempotent)."""
        if self._task is not None:
            return
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(
            self._poll(self._stopping), name=f"{self._kind}:{self._path}"
        )

    async def close(self) -> None:
        """Stop polling; waits for a check in progress to finish."""
        task, stopping = self._task, self._stopping
        self._task = self._stopping = None
        if task is None or stopping is None:
            return
        stopping.set()
        await task

    async def reload(self) -> bool:
        """Check the file now: True if a new version was applied. Never raises for a bad file."""
        return await asyncio.to_thread(self._check, True)

    async def _poll(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self._interval_s)
                return
            try:
                await asyncio.to_thread(self._check, False)
            except Exception:  # a bug must not stop the reloading: log it and poll on
                self._log.exception(f"{self._kind}_check_failed", extra=self._fields())

    def _check(self, force: bool) -> bool:
        with self._lock:
            try:
                seen = _stat(self._path)
                racy = seen.mtime_ns + _RACY_NS >= self._read_at_ns
                if not force and seen == self._seen and not racy:
                    return False
                data = read_file(self._path)
            except ConfigError as exc:
                self._report(exc, about=exc.problem)
                return False
            self._seen = seen
            self._read_at_ns = time.time_ns()
            digest = hashlib.sha256(data).digest()
            if digest == self._digest:
                if self._failed is not None:
                    self._failed = None
                    self._log.info(
                        f"{self._kind}_file_restored", extra=self._fields(version=self._version)
                    )
                return False
            if digest == self._failed:
                return False
            try:
                current = self._parse(data, self._path)
            except ConfigError as exc:
                self._report(exc, about=digest)
                return False
            self._current = current
            self._digest = digest
            self._failed = None
            self._version += 1
            self._loaded_at = time.time()
        self._log.info(
            f"{self._kind}_reloaded",
            extra=self._fields(**self._describe(current), version=self._version),
        )
        return True

    def _report(self, exc: ConfigError, *, about: object) -> None:
        if about == self._failed:
            return
        self._failed = about
        self._log.warning(
            f"{self._kind}_reload_rejected",
            extra=self._fields(error=str(exc), version=self._version),
        )

    def _fields(self, **more: object) -> dict[str, object]:
        return {"component": self._component, "path": str(self._path), **more}
