"""`gateway validate`: every problem of a config, one line each, without touching the network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gateway.brokers import free_port

ROOT = Path(__file__).resolve().parent.parent
TEST_POLICIES = ROOT / "tests" / "data" / "policies"


def validate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gateway", "validate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full,
        timeout=60,
        check=False,
    )


def test_defaults_and_shipped_configs_validate() -> None:
    for args in ([], ["--config", "gateway.example.toml"]):
        out = validate(*args)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.strip().endswith(": ok")
        assert "Traceback" not in out.stderr


def test_every_problem_listed_with_setting_file_and_line(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(TEST_POLICIES, policies)
    toml = policies / "purifier.toml"
    toml.write_text(toml.read_text().replace("test.txt § Storage", "test.txt § Storage Sites", 1))
    (tmp_path / "devices.toml").write_text('[devices]\n"dev-1" = "mars"\n')
    (tmp_path / "a-file").write_text("")
    port = free_port()  # nothing listens: validate must not try
    conf = tmp_path / "conf" / "gateway.toml"
    conf.parent.mkdir()
    conf.write_text(
        'policies = "../policies"\n'
        'state_dir = "../a-file/state"\n'
        "[source]\n"
        f"port = {port}\n"
        'username = "gw"\n'
        'password_env = "GATEWAY_TEST_UNSET"\n'
        "[source.tls]\n"
        'ca = "certs/ca.crt"\n'
        "[routing]\n"
        'registry = "${REG_DIR:-..}/devices.toml"\n'
        "[[sinks]]\n"
        'type = "nats"\n'
        'regions = ["de"]\n'
        'nats = { url = "nats://127.0.0.1:1" }\n'
    )
    t0 = time.monotonic()
    out = validate("--config", str(conf))
    assert time.monotonic() - t0 < 30
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stdout.splitlines()
    c = str(conf)
    expected = [
        (f"{c}:2: state_dir: ", "a-file is not a directory"),
        (f"{c}:6: source.password_env: ", "$GATEWAY_TEST_UNSET is not set"),
        (f"{c}:8: source.tls.ca: ", "conf/certs/ca.crt: no such file"),
        (f"{c}:10: routing.registry: ", "unknown region ids ['mars']"),
        (f"{toml}: regions.de: ", "no heading 'Storage Sites' in test.txt"),
    ]
    for start, says in expected:
        assert any(ln.startswith(start) and says in ln for ln in lines), (start, out.stdout)
    # Records of `us` (named by the policy) have no sink: held, a warning only.
    assert any(ln.startswith("warning: ") and "region us" in ln for ln in lines)
    assert lines[-1] == f"{c}: {len(expected)} error(s)"
    assert "dev-1" not in out.stdout  # a device id is never repeated


def test_mqtt_sink_certificates(tmp_path: Path) -> None:
    conf = tmp_path / "gateway.toml"
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    conf.write_text(
        f'state_dir = "{tmp_path}/state"\n[[sinks]]\ntype = "mqtt"\n'
        '[sinks.mqtt]\nhost = "eu.example"\ntls = { ca = "ca.crt" }\n'
    )
    out = validate("--config", str(conf))
    assert out.returncode == 1
    assert f"{conf}:6: sinks[0].mqtt.tls.ca: {tmp_path}/ca.crt: no PEM certificate" in out.stdout


def test_bad_master_key_in_env_is_named_not_shown() -> None:
    out = validate(env={"GATEWAY_MASTER_KEY": "secretish-not-hex"})
    assert out.returncode == 1
    assert "$GATEWAY_MASTER_KEY: master key must be hex" in out.stdout
    assert "secretish" not in out.stdout + out.stderr


def test_a_registry_error_never_names_a_device(tmp_path: Path) -> None:
    (tmp_path / "devices.toml").write_text('[devices]\n"dev-secret-1" = 3\n')
    conf = tmp_path / "gateway.toml"
    conf.write_text('state_dir = "state"\n[routing]\nregistry = "devices.toml"\n')
    out = validate("--config", str(conf))
    assert out.returncode == 1
    assert "routing.registry" in out.stdout
    assert "dev-secret-1" not in out.stdout + out.stderr
