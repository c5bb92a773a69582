"""The master key: where it is read from, and the checks that keep pseudonyms stable.

Order: `$GATEWAY_MASTER_KEY`, else the file `[keys] file` (a Kubernetes Secret or systemd
credential mounted read-only), else `<state_dir>/master.key`, created (0600) on first start
only. The key's fingerprint (an HKDF output, not key material) is kept in
`<state_dir>/master.key.fingerprint`: a different key, or a missing key file while the state
dir holds state, is refused with one line unless the operator says `--new-key`. Then the
spools and held records sealed under the old key are set aside (they could never be read)
and the consent store is rebuilt from the broker's retained consent.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from pathlib import Path

import msgspec

from gateway.durable import replace_file
from gateway.transforms.pseudonymize import MASTER_KEY_ENV, KeyError_, derive, parse_master

FINGERPRINT_FILE = "master.key.fingerprint"
KEY_FILE = "master.key"


class KeysConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Path of the hex key, e.g. a Kubernetes Secret or $CREDENTIALS_DIRECTORY/master-key;
    # None = <state_dir>/master.key, created on first start.
    file: str | None = None
    # Pseudonym key epoch: a new epoch gives every device new, unlinkable pseudonyms; the
    # key id in every record is <product>/<epoch>.
    epoch: int = 1

    def __post_init__(self) -> None:
        if self.epoch < 1:
            raise ValueError("keys.epoch must be >= 1")


def fingerprint(master: bytes) -> str:
    return derive(master, "privacy-gateway/v1/fingerprint", 16).hex()


def load_master(
    state_dir: Path, cfg: KeysConfig, *, new_key: bool = False, create: bool = True
) -> bytes:
    """The master key, checked against the state dir; raises KeyError_ with one line."""
    path = Path(cfg.file) if cfg.file else state_dir / KEY_FILE
    fp_path = state_dir / FINGERPRINT_FILE
    known = fp_path.read_text().strip() if fp_path.exists() else None
    has_state = known is not None or any(state_dir.glob("worker-*"))
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        try:
            master = parse_master(env)
        except KeyError_ as exc:  # say where the bad key came from: the environment wins
            raise KeyError_(f"${MASTER_KEY_ENV}: {exc}") from None
    elif path.exists():
        _check_mode(path)
        try:
            master = parse_master(path.read_text())
        except KeyError_ as exc:
            raise KeyError_(f"key file {path}: {exc}") from None
    elif cfg.file:
        raise KeyError_(f"key file {path} does not exist ([keys] file)")
    elif not create:
        raise KeyError_(f"master key {path} does not exist")
    elif has_state and not new_key:
        raise KeyError_(
            f"master key {path} is missing but {state_dir} holds state made with a key: "
            "restore the key file, or start with --new-key to begin new pseudonyms"
        )
    else:
        master = _create(path)
    fp = fingerprint(master)
    if known is not None and known != fp:
        if not new_key:
            raise KeyError_(
                f"master key (fingerprint {fp[:16]}) is not the one {state_dir} was made with "
                f"({known[:16]}): start with --new-key to accept it (pseudonyms change)"
            )
        _set_aside(state_dir, known[:16])
    if known != fp and create:
        state_dir.mkdir(parents=True, exist_ok=True)
        replace_file(fp_path, fp.encode() + b"\n")
    return master


def _check_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyError_(
            f"key file {path} is open to group or others (mode {mode:04o}): chmod 600 it "
            "(Kubernetes: defaultMode 0400)"
        )


def _create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return parse_master(path.read_text())


def _set_aside(state_dir: Path, old: str) -> None:
    """What the old key sealed cannot be read under the new one: kept aside (the old key
    can still open it), never fed to a sink. The consent store names no device and is
    rebuilt from the broker."""
    for worker in state_dir.glob("worker-*"):
        for name in ("spool", "held"):
            d = worker / name
            if d.exists():
                os.replace(d, worker / f"{name}.key-{old}")
        for p in worker.glob("consent.db*"):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
