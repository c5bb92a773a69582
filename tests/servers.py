"""Real broker processes for integration tests: mosquitto and nats-server (JetStream).

Each server runs in its own tmp dir on a free 127.0.0.1 port. ``stop()`` then ``start()``
brings it back on the SAME port with the SAME persistence/store dir, so tests can exercise
broker restarts. A server that cannot start fails the test loudly; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest

from gateway.brokers import find_mosquitto, free_port

__all__ = [
    "Mosquitto",
    "NatsServer",
    "free_port",
    "mosquitto",
    "nats_server",
    "sink_mosquitto",
    "wait_port",
]

# The same lookup as the demo's broker (PATH, then Debian's /usr/sbin).
MOSQUITTO_BIN = Path(find_mosquitto() or "/usr/sbin/mosquitto")
NATS_SERVER_BIN = Path("/usr/sbin/nats-server")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} before listening:\n{_tail(log)}")
        if port_open(port):
            return
        time.sleep(0.02)
    pytest.fail(f"{what} did not open port {port} within {START_TIMEOUT_S} s:\n{_tail(log)}")


def _tail(log: Path, n: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class _Server:
    """Start/stop bookkeeping shared by both brokers."""

    name = "server"

    def __init__(self, binary: Path, workdir: Path, port: int | None) -> None:
        if not binary.is_file() or not os.access(binary, os.X_OK):
            pytest.fail(f"{self.name} binary missing or not executable: {binary}")
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.log = self.dir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._log_file = self.log.open("ab")
        self._proc = subprocess.Popen(
            self._argv(),
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_port(self.port, self._proc, self.log, self.name)
        except BaseException:
            self.stop()  # never leave a half-started server behind a failed test
            raise

    def stop(self) -> None:
        """Graceful stop (SIGTERM), so mosquitto writes its persistence file."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        # The port must be free before a restart can bind it again.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def pause(self) -> None:
        """SIGSTOP: the process hangs, its sockets stay open (a wedged broker)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Hard stop (SIGKILL): no graceful shutdown, like a crash."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self.stop()


class Mosquitto(_Server):
    name = "mosquitto"

    def __init__(
        self, workdir: Path, port: int | None = None, extra_config: Sequence[str] = ()
    ) -> None:
        super().__init__(MOSQUITTO_BIN, workdir, port)
        self.persistence_dir = self.dir / "persistence"
        self.persistence_dir.mkdir(exist_ok=True)
        self.config = self.dir / "mosquitto.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    # As root mosquitto would drop to user "mosquitto", which cannot write
                    # the tmp persistence dir; stay the user that runs the tests.
                    f"user {pwd.getpwuid(os.getuid()).pw_name}",
                    "persistence true",
                    f"persistence_location {self.persistence_dir}/",
                    "persistence_file mosquitto.db",
                    # Generous limits: tests push thousands of QoS1 messages quickly.
                    "max_inflight_messages 1000",
                    "max_queued_messages 100000",
                    "max_queued_bytes 0",
                    "log_dest stdout",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    *extra_config,
                    "",
                ]
            )
        )

    def _argv(self) -> list[str]:
        return [str(self.binary), "-c", str(self.config)]


class NatsServer(_Server):
    name = "nats-server"

    def __init__(self, workdir: Path, port: int | None = None, config: str = "") -> None:
        super().__init__(NATS_SERVER_BIN, workdir, port)
        self.store_dir = self.dir / "jetstream"
        self.store_dir.mkdir(exist_ok=True)
        # Extra server configuration (authorization, tls blocks); flags below still apply.
        self.config: Path | None = None
        if config:
            self.config = self.dir / "nats.conf"
            self.config.write_text(config)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        return [
            str(self.binary),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.store_dir),
            *(["-c", str(self.config)] if self.config else []),
        ]


@contextlib.contextmanager
def _running(server: _Server) -> Iterator[None]:
    try:
        server.start()
        yield
    finally:
        server.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "mosquitto")
    with _running(server):
        yield server


@pytest.fixture
def sink_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A second, regional broker for an MQTT sink, apart from the devices' broker."""
    server = Mosquitto(tmp_path / "sink-mosquitto")
    with _running(server):
        yield server


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    with _running(server):
        yield server
