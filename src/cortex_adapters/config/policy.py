"""Read a safety policy file (YAML) into the core's ``Policy``, and follow it as it changes.

``load_policy`` reads once. ``ReloadingPolicy`` reads at construction (a broken file fails the
start) and then follows the file (``ReloadingFile``): a broken new version keeps the last good
policy in force (ADR 0006).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cortex_adapters.config._files import ReloadingFile, parse_yaml, read_file
from cortex_core.policy import Policy

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.yaml")

log = logging.getLogger("cortex.safety")


def _parse(data: bytes, file: Path) -> Policy:
    return parse_yaml(data, file, Policy.from_document)


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate ``path`` (the shipped default when None). Errors name file, rule and
    field: ``policy.yaml: policy.rules[2] (deny-big).max_prompt_bytes: must be ...``."""
    file = Path(path) if path is not None else DEFAULT_POLICY_FILE
    return _parse(read_file(file), file)


class ReloadingPolicy(ReloadingFile[Policy]):
    """The policy in a file (the shipped one when None), reloaded when the file changes."""

    def __init__(self, path: str | Path | None = None, *, interval_s: float = 1.0) -> None:
        super().__init__(
            Path(path) if path is not None else DEFAULT_POLICY_FILE,
            parse=_parse,
            interval_s=interval_s,
            kind="policy",
            logger=log,
            component="safety",
            describe=lambda policy: {"rules": len(policy.rules)},
        )
