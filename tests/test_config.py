"""gateway.toml: the example file documents the defaults, and bad settings fail clearly."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.config import ConfigError, GatewayConfig, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_lists_exactly_the_defaults() -> None:
    example = load_config(ROOT / "gateway.example.toml")
    # `policies` is the one setting the file marks as an example; relative paths in a file
    # are relative to its directory.
    defaults = GatewayConfig()
    sink = defaults.sinks[0]
    assert sink.file is not None
    expected = msgspec.structs.replace(
        defaults,
        state_dir=str(ROOT / defaults.state_dir),
        sinks=(
            msgspec.structs.replace(
                sink, file=msgspec.structs.replace(sink.file, dir=str(ROOT / sink.file.dir))
            ),
        ),
    )
    assert msgspec.structs.replace(example, policies=None) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[source]\nport = 0\n", "source.port out of range"),
        ('[routing]\ndefault_region = "mars"\n', "routing.default_region must be one of"),
        ('[[sinks]]\ntype = "file"\n', "a file sink needs a [sinks.file] table"),
        ('[[sinks]]\ntype = "file"\nregions = ["xx"]\nfile = { dir = "d" }\n', "['xx']"),
        ("unknown_setting = 1\n", ":1: unknown_setting: unknown setting"),
        ("[source]\nhost = 'h'\nnope = 1\n", ":3: source.nope: unknown setting"),
        ("[source]\nport = '${GATEWAY_TEST_UNSET_VAR}'\n", ":2: source.port: ${GATEWAY_TEST_UNSET"),
        ("workers = 0\n", "workers must be >= 1"),
    ],
)
def test_bad_settings_name_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert says in str(err.value)


def test_every_wrong_section_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        'workers = 0\n[source]\nport = "x"\n[[sinks]]\ntype = "file"\n'
        'file = { dir = "d" }\n[[sinks]]\ntype = "mqtt"\n[sinks.mqtt]\nhost = "h"\nqos = 0\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert lines == [
        f"{path}:3: source.port: Expected `int`, got `str`",
        f"{path}:9: sinks[1].mqtt: qos must be 1 or 2",
    ]


def test_interpolation_and_paths_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TEST_HOST", "broker.example")
    monkeypatch.setenv("GW_TEST_EMPTY", "")
    path = tmp_path / "conf" / "gateway.toml"
    path.parent.mkdir()
    path.write_text(
        'state_dir = "state"\n'
        "[source]\n"
        'host = "${GW_TEST_HOST}"\n'
        'port = "${GW_TEST_PORT_UNSET:-8883}"\n'
        'group = "g-${GW_TEST_EMPTY:-x}"\n'
        "[routing]\n"
        'registry = "/abs/devices.toml"\n'
    )
    config = load_config(path)
    assert config.source.host == "broker.example"
    assert config.source.port == 8883
    assert config.source.group == "g-x"
    assert config.state_dir == str(tmp_path / "conf" / "state")
    assert config.routing.registry == "/abs/devices.toml"
    # A default the file does not set stays relative to the working directory.
    assert config.sinks[0].file is not None
    assert config.sinks[0].file.dir == "var/gateway/sinks"
