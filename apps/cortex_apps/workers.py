"""The worker kinds ``cortex worker`` can run, and loading a user's own handler."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from cortex_adapters.worker.runtime import Handler
from cortex_core.bus_protocol import is_valid_token, is_valid_topic
from cortex_core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class WorkerKind:
    pool: str
    topics: tuple[str, ...]
    make_handler: Callable[[], Handler]
    """Called once per process: a handler may hold a client (``start``/``close``)."""


def echo_kind() -> WorkerKind:
    from cortex_adapters.worker import echo

    return WorkerKind(echo.POOL, echo.TOPICS, lambda: echo.echo_handler)


def log_analyzer_kind() -> WorkerKind:
    from cortex_adapters.worker import log_analyzer

    return WorkerKind(
        log_analyzer.POOL, log_analyzer.TOPICS, lambda: log_analyzer.log_analyzer_handler
    )


def llm_kind() -> WorkerKind:
    from cortex_adapters.worker import llm

    return WorkerKind(llm.POOL, llm.TOPICS, lambda: llm.LlmHandler(llm.LlmConfig.from_env()))


BUILTIN: dict[str, Callable[[], WorkerKind]] = {
    "echo": echo_kind,
    "log-analyzer": log_analyzer_kind,
    "llm": llm_kind,
}


def _import(name: str) -> ModuleType:
    """A dotted module name, or the path of a ``.py`` file."""
    if not name.endswith(".py"):
        return importlib.import_module(name)
    path = Path(name).resolve()
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def custom_kind(handler: str, pool: str, topics: list[str]) -> WorkerKind:
    """``module.path:attr`` or ``file.py:attr``, naming an async handler of your own."""
    if not is_valid_token(pool):
        raise ConfigError("--pool", f"{pool!r} is not a pool name (letters, digits, '_', '-')")
    if not topics:
        raise ConfigError("--topic", "give at least one topic the pool serves")
    for topic in topics:
        if not is_valid_topic(topic):
            raise ConfigError("--topic", f"{topic!r} is not a topic like 'job.mine'")
    module_name, _, attribute = handler.rpartition(":")
    if not module_name or not attribute:
        raise ConfigError("--handler", f"{handler!r} is not 'module.path:attr' or 'file.py:attr'")
    try:
        module = _import(module_name)
    except (ImportError, OSError, SyntaxError) as exc:
        raise ConfigError("--handler", f"cannot import {module_name!r}: {exc}") from exc
    target = getattr(module, attribute, None)
    if not callable(target):
        raise ConfigError("--handler", f"{module_name} has no callable {attribute!r}")
    return WorkerKind(pool, tuple(topics), lambda: target)
