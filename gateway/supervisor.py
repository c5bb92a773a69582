"""`gateway run`'s processes: one worker in this process, or one per core, each its own
`Gateway`, with signals forwarded and the key checked once before any of them starts."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from gateway import signals
from gateway.config import ConfigError, GatewayConfig, StartupError, load_config
from gateway.service import Gateway, master_key
from gateway.validate import preflight

log = logging.getLogger("gateway.service")


def run_worker(
    config: GatewayConfig, worker: int, shadow: bool, one_of_many: bool, new_key: bool = False
) -> int:
    # Normally installed by the entry point already, before any heavy import.
    signals.install()
    gw = Gateway(config, worker, shadow, one_of_many=one_of_many, new_key=new_key)
    gw.start()
    log.info(
        "gateway worker %d running%s: %d policies, metrics on %s (+%d)",
        worker,
        " in shadow mode" if gw.shadow else "",
        len(gw.engine.products),
        config.metrics_listen,
        worker,
    )
    while not signals.STOP.wait(0.1):
        if signals.RELOAD.is_set():
            signals.RELOAD.clear()
            gw.request_reload()
        if not gw.healthy():
            log.error("worker thread ended; exiting so the supervisor restarts us")
            gw.stop()
            return 1
    gw.stop()
    return 0


def run_from_config(
    path: Path | None,
    workers: int | None,
    shadow: bool,
    worker_index: int | None = None,
    new_key: bool = False,
) -> int:
    config = load_config(path)
    problems = [p for p in preflight(config, path) if p.level == "error"]
    if problems:
        raise StartupError("\n".join(f"{p}" for p in problems))
    n = workers or config.workers
    shadow = shadow or config.shadow
    if n > 1 and not config.source.shared:
        # Workers split the load through a shared subscription, which mosquitto 2.0 does
        # not restore after a restart: the operator has to choose that knowingly.
        raise ConfigError(
            f"{n} workers split the load through a shared subscription: set shared = true "
            "under [source] (see gateway/sources/mqtt/README.md, broker restarts)"
        )
    if worker_index is not None or n == 1:
        one_of_many = worker_index is not None
        return run_worker(config, worker_index or 0, shadow, one_of_many, new_key)
    # Several processes, one per core: each joins the same shared subscription group. The
    # key is checked (and --new-key applied) once, here, before any of them starts.
    master_key(Path(config.state_dir), config, new_key)
    cmd = [sys.executable, "-m", "gateway", "run"]
    if path is not None:
        cmd += ["--config", str(path)]
    if shadow:
        cmd.append("--shadow")
    children = [
        subprocess.Popen([*cmd, "--worker-index", str(i)], env=os.environ.copy()) for i in range(n)
    ]

    def forward(signum: int, frame: FrameType | None) -> None:
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    if signals.STOP.is_set():  # asked to stop while starting up
        forward(signal.SIGTERM, None)
    codes = [c.wait() for c in children]
    return max(codes)
