"""`gateway validate`: everything that can be checked about a config without the network.

`preflight` is what `gateway run` refuses to start without (files, keys, secrets from the
environment, writable directories); `validate` adds the policies, as `gateway check` judges
them, and regions no sink serves. Every problem is one line naming the setting and the file.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from gateway.config import GatewayConfig, read_config
from gateway.config_file import Problem, locate, undotted
from gateway.policy.loader import DEFAULT_DIR, PolicyError, load_dir
from gateway.route.router import RegistryError, load_registry
from gateway.route.topics import TopicError, TopicScheme
from gateway.transforms.pseudonymize import MASTER_KEY_ENV, KeyError_, parse_master
from gateway.validate.policies import policy_findings

__all__ = ["Problem", "preflight", "validate"]


class _Checks:
    def __init__(self, file: Path | None) -> None:
        self.file = str(file) if file is not None else "(defaults)"
        try:
            self.text = file.read_text(encoding="utf-8", errors="replace") if file else ""
        except OSError:
            self.text = ""
        self.problems: list[Problem] = []

    def error(self, setting: str, message: str) -> None:
        line = locate(self.text, undotted(setting)) if setting else None
        self.problems.append(Problem(self.file, setting, message, line))

    def warn(self, setting: str, message: str) -> None:
        line = locate(self.text, undotted(setting)) if setting else None
        self.problems.append(Problem(self.file, setting, message, line, "warning"))

    def readable(self, setting: str, path: str) -> bool:
        p = Path(path)
        if not p.exists():
            self.error(setting, f"{path}: no such file")
        elif not p.is_file():
            self.error(setting, f"{path}: not a file")
        elif not os.access(p, os.R_OK):
            self.error(setting, f"{path}: not readable")
        else:
            return True
        return False

    def writable_dir(self, setting: str, path: str) -> None:
        """The directory exists and is writable, or can be created."""
        p = Path(path)
        while not p.exists():
            if p.parent == p:
                break
            p = p.parent
        if not p.is_dir():
            self.error(setting, f"{path}: {p} is not a directory")
        elif not os.access(p, os.W_OK | os.X_OK):
            self.error(setting, f"{path}: {p} is not writable")

    def tls(self, setting: str, ca: str | None, cert: str | None, key: str | None) -> None:
        ok = all(self.readable(f"{setting}.{n}", v) for n, v in (("ca", ca), ("cert", cert),
                 ("key", key)) if v is not None)  # fmt: skip
        if not ok:
            return
        ctx = ssl.create_default_context()
        if ca is not None:
            try:
                ctx.load_verify_locations(cafile=ca)
            except ssl.SSLError:
                self.error(f"{setting}.ca", f"{ca}: no PEM certificate in it")
        if cert is not None and key is not None:
            try:
                ctx.load_cert_chain(cert, key)
            except ssl.SSLError:
                self.error(f"{setting}.cert", f"{cert}, {key}: not a PEM certificate and its key")

    def password(self, setting: str, username: str | None, env: str | None) -> None:
        if env is not None and username is None:
            self.error(f"{setting}.password_env", "a password needs a username")
        elif env is not None and not os.environ.get(env):
            # Connecting without it would silently try anonymous access.
            self.error(f"{setting}.password_env", f"${env} is not set")


def _master_key(c: _Checks, state_dir: str) -> None:
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        try:
            parse_master(env)
        except KeyError_ as exc:
            c.error("", f"${MASTER_KEY_ENV}: {exc}")
        return
    path = Path(state_dir) / "master.key"
    if path.exists() and c.readable("state_dir", str(path)):
        try:
            parse_master(path.read_text())
        except (KeyError_, UnicodeDecodeError) as exc:
            c.error("state_dir", f"{path}: {exc}")


def _check(config: GatewayConfig, c: _Checks) -> None:
    c.writable_dir("state_dir", config.state_dir)
    _master_key(c, config.state_dir)
    if int(config.metrics_listen.rpartition(":")[2]) > 65535:
        c.error("metrics_listen", "port out of range")
    src = config.source
    try:
        TopicScheme(src.topic_pattern)
    except TopicError as exc:
        c.error("source.topic_pattern", str(exc))
    c.password("source", src.username, src.password_env)
    if src.tls is not None:
        c.tls("source.tls", src.tls.ca, src.tls.cert, src.tls.key)
    if config.routing.registry is not None and c.readable(
        "routing.registry", config.routing.registry
    ):
        try:
            load_registry(Path(config.routing.registry))
        except RegistryError as exc:
            c.error("routing.registry", str(exc))
    for i, spec in enumerate(config.sinks):
        at = f"sinks[{i}]"
        if spec.file is not None:
            c.writable_dir(f"{at}.file.dir", spec.file.dir)
        if spec.mqtt is not None:
            c.password(f"{at}.mqtt", spec.mqtt.username, spec.mqtt.password_env)
            if spec.mqtt.tls is not None:
                t = spec.mqtt.tls
                c.tls(f"{at}.mqtt.tls", t.ca, t.cert, t.key)
        if spec.nats is not None:
            n = spec.nats
            c.password(f"{at}.nats", n.user, n.password_env)
            for name, path in (("creds", n.creds), ("nkey", n.nkey)):
                if path is not None:
                    c.readable(f"{at}.nats.{name}", path)
            if n.tls is not None:
                c.tls(f"{at}.nats.tls", n.tls.ca, n.tls.cert, n.tls.key)


def preflight(config: GatewayConfig, file: Path | None) -> list[Problem]:
    c = _Checks(file)
    _check(config, c)
    return c.problems


def validate(path: Path | None) -> list[Problem]:
    """Every problem of the config at `path` (None: the embedded defaults)."""
    if path is None:
        config: GatewayConfig | None = GatewayConfig()
        problems: list[Problem] = []
    else:
        config, problems = read_config(path)
    if config is None:
        return problems
    c = _Checks(path)
    _check(config, c)
    policy_dir = Path(config.policies) if config.policies else DEFAULT_DIR
    try:
        loaded = load_dir(policy_dir)
    except PolicyError as exc:
        c.error("policies", str(exc))
        return c.problems
    for lp in loaded.values():
        for f in policy_findings(lp):
            _, _, where = f.where.partition(":")
            c.problems.append(Problem(str(lp.path), where, f.message, level=f.level))
    for region in sorted({r.id for lp in loaded.values() for r in lp.policy.regions}):
        if config.sink_for(region) is None:
            c.warn("sinks", f"no sink serves region {region}: its records are held")
    return c.problems
