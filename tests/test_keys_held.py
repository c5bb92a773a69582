"""The master key is checked against the state it made; held records are encrypted, bounded,
listed without values, replayed to a sink configured later, purged; a product whose policy
names no region keeps nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, Routing, SinkSpec
from gateway.consent.state import ConsentState
from gateway.held import HeldConfig, HeldStore
from gateway.keys import KeysConfig, load_master
from gateway.service import Gateway
from gateway.sinks.base import OutRecord
from gateway.sinks.file.config import FileSinkConfig
from gateway.spool.spool import SpoolFull
from gateway.transforms.pseudonymize import MASTER_KEY_ENV, KeyError_, KeyRing
from tests.servers import Mosquitto
from tests.test_service import TEST_POLICIES, Publisher, config, publisher, records, wait_for

__all__ = ["publisher"]

PROPS = b'{"id":%d,"method":"props","params":{"aqi":%d}}'


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)


def test_a_different_or_missing_key_is_refused_unless_new_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_master(state, KeysConfig())
    (state / "worker-0").mkdir()
    assert load_master(state, KeysConfig()) == first  # the same key again: fine
    key = state / "master.key"
    key.write_text("ab" * 32 + "\n")
    with pytest.raises(KeyError_, match="not the one") as exc:
        load_master(state, KeysConfig())
    assert "ab" * 8 not in str(exc.value)  # a fingerprint, never key material
    key.unlink()
    with pytest.raises(KeyError_, match="is missing"):
        load_master(state, KeysConfig())  # never silently re-created
    (state / "worker-0" / "spool").mkdir()
    (state / "worker-0" / "consent.db").write_bytes(b"x")
    second = load_master(state, KeysConfig(), new_key=True)
    assert second != first
    assert not (state / "worker-0" / "spool").exists()  # set aside, not fed to a sink
    assert any(p.name.startswith("spool.key-") for p in (state / "worker-0").iterdir())
    assert not (state / "worker-0" / "consent.db").exists()
    assert load_master(state, KeysConfig()) == second


def test_key_file_setting_mode_and_epoch(tmp_path: Path) -> None:
    secret = tmp_path / "secret" / "master-key"
    secret.parent.mkdir()
    secret.write_text("cd" * 32)
    secret.chmod(0o644)
    with pytest.raises(KeyError_, match="group or others") as exc:
        load_master(tmp_path / "state", KeysConfig(file=str(secret)))
    assert str(secret) in str(exc.value)
    secret.chmod(0o400)
    assert load_master(tmp_path / "state", KeysConfig(file=str(secret))) == bytes.fromhex("cd" * 32)
    with pytest.raises(KeyError_, match="does not exist"):
        load_master(tmp_path / "state", KeysConfig(file=str(tmp_path / "nope")))
    assert KeyRing(bytes(32), 3).for_product("purifier").key_id == "purifier/3"


def test_cli_refuses_another_key_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    load_master(state, KeysConfig())
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'state_dir = "{state}"\n')
    env = {**os.environ, MASTER_KEY_ENV: "ef" * 32}
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert out.stderr.count(b"\n") == 1 and b"--new-key" in out.stderr
    assert b"Traceback" not in out.stderr


def _rec(i: int, product: str = "purifier", region: str = "fr") -> OutRecord:
    body = json.dumps({"id": f"{i:032x}", "device": f"p{i % 2}", "region": region, "n": i})
    return OutRecord(f"{i:032x}", product, "props", region, body.encode(), f"p{i % 2}")


def test_held_store_is_encrypted_bounded_and_erasable(tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "held", bytes(range(32)), max_bytes=4096)
    store.write([_rec(i) for i in range(10)])
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "held").iterdir())
    assert b'"device"' not in on_disk and b"purifier" not in on_disk
    with pytest.raises(SpoolFull):
        store.write([_rec(i) for i in range(10, 100)])
    assert store.records == 10  # nothing of a refused batch
    assert store.erase({"p1"}) == 5
    assert store.counts() == {("purifier", "fr", "props"): 5}
    store.close()


def test_held_list_replay_purge_and_no_region_keeps_nothing(
    tmp_path: Path, mosquitto: Mosquitto, publisher: Publisher
) -> None:
    cfg = config(
        tmp_path,
        mosquitto.port,
        policies=str(TEST_POLICIES),
        routing=Routing(default_region="de"),
        sinks=(),  # no sink yet: every record is held
        held=HeldConfig(max_bytes=1 << 20),
    )
    gw = Gateway(cfg)
    gw.start()
    try:
        wait_for(gw.is_ready, what="gateway ready")
        for i in range(30):
            publisher.send("miot/purifier/dev1/props", PROPS % (i, i))
        wait_for(lambda: gw.held.records == 30, what="30 held")
    finally:
        gw.stop()
    toml = tmp_path / "gateway.toml"
    toml.write_text(
        f'state_dir = "{cfg.state_dir}"\npolicies = "{TEST_POLICIES}"\n'
        f'[[sinks]]\ntype = "file"\nregions = ["de"]\nfile = {{ dir = "{tmp_path / "out"}" }}\n'
    )

    def held(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "gateway", "held", *args, "--config", str(toml)],
            capture_output=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.decode()

    assert held("list").splitlines() == [
        "product\tregion\tkind\trecords",
        "purifier\tde\tprops\t30",
    ]
    assert "dev1" not in held("list")
    assert "replayed 30 held records; 0 stay held" in held("replay")
    assert sorted(r["data"]["id"] for r in records(tmp_path / "out", "de")) == list(range(30))
    assert held("list").splitlines()[1:] == []
    assert "purged 0" in held("purge")


def test_a_policy_without_regions_keeps_nothing(tmp_path: Path) -> None:
    from gateway.fleet import make_devices, message
    from gateway.policy.loader import load_dir

    policies = load_dir()
    dev = make_devices({"smartmi": policies["smartmi"]}, per_product=1)[0]
    kind, rule = next(iter(policies["smartmi"].policy.kinds.items()))
    import msgspec

    from gateway.sources.mqtt.source import Delivery

    gw = Gateway(
        GatewayConfig(
            state_dir=str(tmp_path / "state"),
            sinks=(SinkSpec(type="file", file=FileSinkConfig(dir=str(tmp_path / "s"))),),
        )
    )
    try:
        import random

        # Opted in: its props would leave, if the policy named a region.
        gw.consent.set(
            "smartmi", dev.id, ConsentState(toggles=frozenset({"user_experience_program"}))
        )
        payload = msgspec.json.encode(message(dev, kind, rule, random.Random(1)))
        gw.process([Delivery(f"miot/smartmi/{dev.id}/{kind}", payload, 0, 0)])
        assert gw.held.records == 0
        assert gw.events.held_dropped_records.labels("smartmi", kind)._value.get() == 1
    finally:
        gw.held.close()
        gw.consent.close()
