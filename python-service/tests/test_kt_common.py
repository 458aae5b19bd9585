"""Config loading/validation and build info (kt_common)."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import pytest
import yaml

import kt_common
from conftest import ENV_FILES, SERVICE_ROOT
from kt_common import (
    CONFIG_SCHEMA,
    ConfigError,
    FileTarget,
    ServiceError,
    TcpTarget,
    load_config,
)


def raw(name: str) -> dict:
    return yaml.safe_load((SERVICE_ROOT / name).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- env files


@pytest.mark.parametrize("name", ENV_FILES)
def test_env_file_loads(name: str) -> None:
    config = load_config(SERVICE_ROOT / name)
    assert config.kitchen_url.startswith(("ws://", "wss://"))


def test_env_files_have_identical_keys_and_types() -> None:
    shapes = {name: {key: type(value) for key, value in raw(name).items()} for name in ENV_FILES}
    assert shapes["config.yaml"] == shapes["config.ngrok.yaml"] == shapes["config.prod.yaml"]
    assert list(shapes["config.yaml"]) == list(CONFIG_SCHEMA)


def test_env_urls() -> None:
    assert load_config(SERVICE_ROOT / "config.yaml").kitchen_url == "ws://127.0.0.1:8000/ws/kitchen"
    assert load_config(SERVICE_ROOT / "config.ngrok.yaml").kitchen_url == "wss://kitchntabs.ngrok.app/ws/kitchen"
    assert load_config(SERVICE_ROOT / "config.prod.yaml").kitchen_url == "wss://kitchen.kitchntabs.com/ws/kitchen"


def test_default_path_is_independent_of_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config() == load_config(SERVICE_ROOT / "config.yaml")


# --------------------------------------------------------------------------- validation errors


def test_missing_key_names_file_and_key(tmp_path: Path) -> None:
    data = raw("config.yaml")
    del data["TTS_SERVICE_PORT"]
    path = tmp_path / "config.prod.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: missing required key TTS_SERVICE_PORT (an integer)"


def test_wrong_type_names_file_key_and_type(write_config) -> None:
    path = write_config("config.prod.yaml", LOCAL_WS_PORT="abc")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: LOCAL_WS_PORT must be an integer, got 'abc'"


def test_unknown_key_is_an_error(write_config) -> None:
    path = write_config(PRINTER_PORT=9100)
    with pytest.raises(ConfigError, match=r"config\.test\.yaml: unknown key 'PRINTER_PORT'"):
        load_config(path)


def test_all_problems_reported_at_once(write_config) -> None:
    path = write_config(WS_PORT=8000, RECONNECT_MIN_SECONDS="fast")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines() == [
        f"{path}: WS_PORT must be a string, got 8000",
        f"{path}: RECONNECT_MIN_SECONDS must be a number, got 'fast'",
    ]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("PRINT_SERVICE_PORT", True, "PRINT_SERVICE_PORT must be an integer, got True"),
    ("WS_SCHEME", "http", "WS_SCHEME must be 'ws' or 'wss'"),
    ("WS_PORT", "80a", "WS_PORT must be \"\""),
    ("WS_PATH", "ws", "WS_PATH must start with '/'"),
    ("LOCAL_WS_PORT", 70000, "LOCAL_WS_PORT must be a TCP port"),
    ("PRINTER_TARGET", "lpt1", "PRINTER_TARGET expected 'tcp://host[:port]' or 'file:/absolute/path'"),
    ("PRINTER_TARGET", "file:ticket.bin", "PRINTER_TARGET file: target must be an absolute path"),
    ("SPEECH_NEW_ORDER_MESSAGE", "Mesa {mesa}", "may only use the placeholders {table} and {order}"),
    ("RECONNECT_MAX_SECONDS", 0.1, "RECONNECT_MAX_SECONDS must be >= RECONNECT_MIN_SECONDS"),
])
def test_bad_values(write_config, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=r"config\.test\.yaml: ") as err:
        load_config(write_config(**{key: value}))
    assert message in str(err.value)


def test_integer_accepted_where_number_expected(write_config) -> None:
    assert load_config(write_config(RECONNECT_MAX_SECONDS=20)).reconnect_max_seconds == 20.0


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("WS_HOST: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml: must be a YAML mapping"):
        load_config(bad)


def test_printer_targets() -> None:
    assert kt_common.parse_printer_target("tcp://192.168.1.50:9100") == TcpTarget("192.168.1.50", 9100)
    assert kt_common.parse_printer_target("tcp://printer.local") == TcpTarget("printer.local", 9100)
    assert kt_common.parse_printer_target("file:/tmp/t.bin") == FileTarget(Path("/tmp/t.bin"))
    with pytest.raises(ValueError, match="bad port"):
        kt_common.parse_printer_target("tcp://printer:99999")


# --------------------------------------------------------------------------- build info


def test_version_from_package_json() -> None:
    version = json.loads((SERVICE_ROOT.parent / "electron-app" / "package.json").read_text())["version"]
    assert kt_common.version_line("kt_service") == f"kt_service {version} (source, {platform.machine()})"


@pytest.fixture
def frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pretend to run inside a PyInstaller bundle extracted to tmp_path."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    return tmp_path


def test_frozen_build_info(frozen: Path) -> None:
    (frozen / "build-info.json").write_text(json.dumps(
        {"version": "1.0.0", "env": "prod", "arch": "armv7l", "commit": "abc123"}))
    assert kt_common.version_line("kt_service") == "kt_service 1.0.0 (prod, armv7l)"


def test_frozen_build_info_tolerates_missing_keys_except_version(frozen: Path) -> None:
    (frozen / "build-info.json").write_text(json.dumps({"version": "2.0.0"}))
    assert kt_common.build_info() == kt_common.BuildInfo("2.0.0", "unknown", platform.machine(), "unknown")
    (frozen / "build-info.json").write_text(json.dumps({"env": "prod"}))
    with pytest.raises(ServiceError, match='build-info.json: missing "version"'):
        kt_common.build_info()


def test_frozen_config_comes_from_bundle(frozen: Path) -> None:
    (frozen / "config.yaml").write_text((SERVICE_ROOT / "config.prod.yaml").read_text())
    assert load_config().ws_host == "kitchen.kitchntabs.com"
    (frozen / "config.yaml").unlink()
    with pytest.raises(ConfigError, match=r"--add-data <staged>/config.yaml:\."):
        load_config()


# --------------------------------------------------------------------------- requirements


def pins(name: str) -> dict[str, str]:
    """{normalized package name: version} of a requirements file's == pins."""
    result = {}
    for line in (SERVICE_ROOT / name).read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            package, _, version = requirement.partition("==")
            assert version, f"{name}: {requirement!r} is not pinned with =="
            result[package.lower().replace("_", "-")] = version
    return result


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-armv7l.txt",
                                  "requirements-build.txt", "requirements-dev.txt"])
def test_requirements_are_exact_pins(name: str) -> None:
    assert pins(name)


def test_armv7l_requirements_pin_the_same_packages() -> None:
    assert pins("requirements-armv7l.txt").keys() == pins("requirements.txt").keys()
