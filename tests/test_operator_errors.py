"""Every mistake an operator can make, through the real CLI: exit != 0, one line naming what
and where, never a traceback, never a value."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.brokers import free_port
from tests.certs import CertificateAuthority

ROOT = Path(__file__).resolve().parent.parent
TEST_POLICIES = ROOT / "tests" / "data" / "policies"
GOOD_KEY = bytes(range(32)).hex()


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra or {})
    return env


def gateway(
    *args: str, env: dict[str, str] | None = None, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "gateway", *args]
    return subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, env=_env(env), timeout=60, check=False
    )


def one_line_error(out: subprocess.CompletedProcess[str], *says: str) -> str:
    assert out.returncode != 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    # Progress logged before the failure (INFO) may precede it; the failure is one line.
    lines = [ln for ln in out.stderr.strip().splitlines() if " INFO " not in ln]
    assert len(lines) == 1, out.stderr
    for s in says:
        assert s in lines[0], lines[0]
    return lines[0]


def config(tmp_path: Path, body: str, state: str = "state", metrics_port: int = 0) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'state_dir = "{state}"\nmetrics_listen = "127.0.0.1:{metrics_port or free_port()}"\n'
        f'policies = "{TEST_POLICIES}"\n{body}'
    )
    return path


def test_missing_tls_ca_file_is_named(tmp_path: Path) -> None:
    path = config(tmp_path, f'[source]\ntls = {{ ca = "{tmp_path}/nope-ca.crt" }}\n')
    one_line_error(gateway("run", "--config", str(path)), "source.tls.ca", "nope-ca.crt")


def test_metrics_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        path = config(tmp_path, "", metrics_port=port)
        one_line_error(gateway("run", "--config", str(path)), "metrics_listen", str(port))


def test_state_dir_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    path = config(tmp_path, "", state=str(tmp_path / "a-file" / "state"))
    one_line_error(gateway("run", "--config", str(path)), "state_dir", "not a directory")


def test_missing_key_file(tmp_path: Path) -> None:
    out = gateway("enforce", "--key-file", str(tmp_path / "nope.key"))
    one_line_error(out, "--key-file", "nope.key")


def test_bad_master_key_says_where_it_came_from(tmp_path: Path) -> None:
    secret_looking = "zz" + "ab" * 40
    out = gateway("enforce", env={"GATEWAY_MASTER_KEY": secret_looking})
    line = one_line_error(out, "$GATEWAY_MASTER_KEY", "hex")
    assert secret_looking not in line
    bad = tmp_path / "bad.key"
    bad.write_text("abcd\n")
    one_line_error(gateway("enforce", "--key-file", str(bad)), str(bad), "32 bytes")
    # The service's key file in its state_dir.
    state = tmp_path / "state"
    state.mkdir()
    (state / "master.key").write_text("not hex\n")
    path = config(tmp_path, "")
    one_line_error(gateway("run", "--config", str(path)), "master.key", "hex")


def test_unset_password_env_refuses_to_start(tmp_path: Path) -> None:
    body = '[source]\nusername = "gw"\npassword_env = "GATEWAY_TEST_NO_SUCH_PASSWORD"\n'
    path = config(tmp_path, body)
    one_line_error(
        gateway("run", "--config", str(path)),
        "source.password_env",
        "$GATEWAY_TEST_NO_SUCH_PASSWORD is not set",
    )


def test_config_that_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("workers = 1\nsource = [\n")
    one_line_error(gateway("run", "--config", str(path)), str(path), "not valid TOML")


def test_missing_config_and_policy_dir(tmp_path: Path) -> None:
    one_line_error(gateway("run", "--config", str(tmp_path / "nope.toml")), "nope.toml")
    one_line_error(gateway("check", str(tmp_path / "nope")), "not a directory")
    one_line_error(gateway("explain", "--input", str(tmp_path / "in.jsonl")), "in.jsonl")


def test_demo_without_mosquitto(tmp_path: Path) -> None:
    # The lookup is the one thing replaced: this machine has mosquitto installed.
    code = (
        "import sys, gateway.brokers as b; b.find_mosquitto = lambda: None; "
        "from gateway.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    out = gateway("demo", "--out", str(tmp_path / "demo"), code=code)
    one_line_error(out, "mosquitto is not installed")


def test_mismatched_client_certificate(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca", "a")
    other = CertificateAuthority(tmp_path / "other", "b")
    mine, theirs = ca.client("gateway"), other.client("gateway")
    body = f'[source.tls]\nca = "{ca.cert}"\ncert = "{mine.cert}"\nkey = "{theirs.key}"\n'
    path = config(tmp_path, body)
    one_line_error(gateway("run", "--config", str(path)), "source.tls.cert", "key")


def test_unreachable_broker_names_host_and_port(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    path = config(tmp_path, f"[source]\nport = {port}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(path)],
        cwd=ROOT,
        env=_env({"GATEWAY_MASTER_KEY": GOOD_KEY}),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        seen = ""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                pytest.fail(f"gateway exited with {proc.wait()}:\n{seen}")
            seen += line
            if "WARNING" in line and "mqtt source not connected" in line:
                assert f"broker=127.0.0.1:{port}" in line, line
                break
        else:
            pytest.fail(f"no warning naming the broker:\n{seen}")
    finally:
        proc.terminate()
        proc.wait(20)
    assert "Traceback" not in seen


@pytest.mark.parametrize("args", [["check", "-v"], ["-v", "check"]])
def test_verbose_before_or_after_the_subcommand(args: list[str]) -> None:
    out = gateway(*args)
    assert out.returncode == 0, out.stderr


def test_version() -> None:
    out = gateway("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("gateway ")
