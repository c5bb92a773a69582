"""Load policy files: decode, validate, hash. Errors name the file and the field, never a value."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import msgspec

from gateway.policy.model import Policy

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "defaults" / "policies"


class PolicyError(Exception):
    """A policy file is missing, unreadable or does not match the policy format."""


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    policy: Policy
    path: Path
    # sha256 of the file bytes: records carry it, so an auditor can tell which text decided.
    hash: str


def load_file(path: Path) -> LoadedPolicy:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        policy = msgspec.toml.decode(raw, type=Policy)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PolicyError(f"{path}: {exc}") from None
    if policy.id != path.stem:
        raise PolicyError(f"{path}: id {policy.id!r} must equal the file name {path.stem!r}")
    return LoadedPolicy(policy, path, hashlib.sha256(raw).hexdigest())


def load_dir(directory: Path | None = None) -> dict[str, LoadedPolicy]:
    """Every `*.toml` in `directory` (default: the policies shipped with the package)."""
    directory = directory or DEFAULT_DIR
    if not directory.is_dir():
        raise PolicyError(f"{directory}: not a directory of policy files")
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise PolicyError(f"{directory}: no *.toml policy files")
    loaded = [load_file(p) for p in files]
    return {lp.policy.id: lp for lp in loaded}
