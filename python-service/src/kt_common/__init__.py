"""Shared helpers for the KitchnTabs Python services.

Config loading and validation, version/build info, logging, reconnect backoff
and the small asyncio/WebSocket plumbing that kt_service, print_service and
tts_service have in common. Everything here must also work inside a
PyInstaller --onefile bundle, where data files live under sys._MEIPASS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import platform
import random
import signal
import string
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

import yaml
from websockets.asyncio.server import Server, ServerConnection
from websockets.exceptions import ConnectionClosed

# python-service/ in a source checkout (this file is python-service/src/kt_common/__init__.py).
# Resolved from this file, not the cwd, because Electron starts us from anywhere.
SERVICE_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_JSON = SERVICE_ROOT.parent / "electron-app" / "package.json"

LOOPBACK = "127.0.0.1"
DEFAULT_PRINTER_PORT = 9100
# Bound on a self-test's loopback round trip. Generous because ARM binaries are
# smoke-tested under QEMU emulation; a healthy native run takes well under a second.
SELF_TEST_TIMEOUT = 10.0

log = logging.getLogger("kt_common")


class ServiceError(Exception):
    """An operator-facing failure; the message says what is wrong and how to fix it."""


class ConfigError(ServiceError):
    """The config file is missing, unreadable or invalid."""


# --------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class TcpTarget:
    """A network printer taking raw ESC/POS on a TCP port (JetDirect style)."""

    host: str
    port: int = DEFAULT_PRINTER_PORT

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class FileTarget:
    """A file that receives the ticket bytes, replaced atomically per ticket (development, tests)."""

    path: Path

    def __str__(self) -> str:
        return f"file:{self.path}"


PrinterTarget = TcpTarget | FileTarget


def parse_printer_target(value: str) -> PrinterTarget:
    """Parse PRINTER_TARGET: 'tcp://host[:port]' or 'file:/absolute/path'."""
    if value.startswith("tcp://"):
        parts = urlsplit(value)
        try:
            port = parts.port or DEFAULT_PRINTER_PORT
        except ValueError as exc:
            raise ValueError(f"bad port in {value!r}: {exc}") from None
        if not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"expected 'tcp://host[:port]', got {value!r}")
        return TcpTarget(parts.hostname, port)
    if value.startswith("file:"):
        path = Path(value[len("file:"):])
        # Relative paths would depend on whatever cwd Electron gave us.
        if not path.is_absolute():
            raise ValueError(f"file: target must be an absolute path, got {value!r}")
        return FileTarget(path)
    raise ValueError(f"expected 'tcp://host[:port]' or 'file:/absolute/path', got {value!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    """One environment's settings. Field NAME corresponds to config key NAME.upper()."""

    ws_scheme: str
    ws_host: str
    ws_port: str  # "" means the scheme's default port
    ws_path: str
    local_ws_host: str
    local_ws_port: int
    print_service_port: int
    tts_service_port: int
    printer_target: str
    printer_profile: str
    speech_language: str
    speech_welcome_message: str
    speech_connected_message: str
    speech_new_order_message: str
    speech_output: str  # "speaker" or a WAV file path
    reconnect_min_seconds: float
    reconnect_max_seconds: float

    @property
    def kitchen_url(self) -> str:
        port = f":{self.ws_port}" if self.ws_port else ""
        return f"{self.ws_scheme}://{self.ws_host}{port}{self.ws_path}"

    @property
    def printer(self) -> PrinterTarget:
        return parse_printer_target(self.printer_target)


# Key -> expected Python type, derived from Config so the two cannot drift apart.
CONFIG_SCHEMA: dict[str, type] = {
    name.upper(): kind for name, kind in get_type_hints(Config).items()
}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number"}
NEW_ORDER_PLACEHOLDERS = frozenset({"table", "order"})


def _check_port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"must be a TCP port 1-65535, got {value}"


def _check_nonempty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _check_ws_port(value: str) -> str | None:
    if value == "" or (value.isdigit() and 1 <= int(value) <= 65535):
        return None
    return f"must be \"\" (default port for WS_SCHEME) or a port number 1-65535 as a string, got {value!r}"


def _check_printer_target(value: str) -> str | None:
    try:
        parse_printer_target(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_new_order_template(value: str) -> str | None:
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
    except ValueError as exc:
        return f"is not a valid template ({exc}); use {{table}} or {{order}}"
    unknown = fields - NEW_ORDER_PLACEHOLDERS
    if unknown:
        return f"may only use the placeholders {{table}} and {{order}}, got {sorted(unknown)}"
    return None


def _check_positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value}"


_VALUE_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "WS_SCHEME": lambda v: None if v in ("ws", "wss") else f"must be 'ws' or 'wss', got {v!r}",
    "WS_HOST": _check_nonempty,
    "WS_PORT": _check_ws_port,
    "WS_PATH": lambda v: None if v.startswith("/") else f"must start with '/', got {v!r}",
    "LOCAL_WS_HOST": _check_nonempty,
    "LOCAL_WS_PORT": _check_port,
    "PRINT_SERVICE_PORT": _check_port,
    "TTS_SERVICE_PORT": _check_port,
    "PRINTER_TARGET": _check_printer_target,
    "PRINTER_PROFILE": _check_nonempty,
    "SPEECH_LANGUAGE": _check_nonempty,
    "SPEECH_NEW_ORDER_MESSAGE": _check_new_order_template,
    "SPEECH_OUTPUT": _check_nonempty,
    "RECONNECT_MIN_SECONDS": _check_positive,
    "RECONNECT_MAX_SECONDS": _check_positive,
}


def _coerce(value: Any, kind: type) -> Any:
    """Return value as kind, or raise TypeError. YAML '5' is int; accept it where a float is expected."""
    if isinstance(value, bool):  # bool is an int subclass, but 'true' is never a valid port
        raise TypeError
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, kind):
        return value
    raise TypeError


def parse_config(data: Any, source: str) -> Config:
    """Validate a parsed YAML document; every problem is reported, each naming source and key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a YAML mapping of KEY: value, got {type(data).__name__}")
    problems: list[str] = []
    for key in sorted(set(data) - set(CONFIG_SCHEMA), key=str):
        problems.append(f"{source}: unknown key {key!r}; remove it or fix its spelling "
                        f"(known keys: {', '.join(CONFIG_SCHEMA)})")
    values: dict[str, Any] = {}
    for key, kind in CONFIG_SCHEMA.items():
        if key not in data:
            problems.append(f"{source}: missing required key {key} ({_TYPE_NAMES[kind]})")
            continue
        try:
            value = _coerce(data[key], kind)
        except TypeError:
            problems.append(f"{source}: {key} must be {_TYPE_NAMES[kind]}, got {data[key]!r}")
            continue
        check = _VALUE_CHECKS.get(key)
        problem = check(value) if check else None
        if problem:
            problems.append(f"{source}: {key} {problem}")
        values[key.lower()] = value
    if not problems and values["reconnect_max_seconds"] < values["reconnect_min_seconds"]:
        problems.append(f"{source}: RECONNECT_MAX_SECONDS must be >= RECONNECT_MIN_SECONDS")
    if problems:
        raise ConfigError("\n".join(problems))
    return Config(**values)


def default_config_path() -> Path:
    """Where config.yaml lives: inside the bundle when frozen, else python-service/config.yaml."""
    if getattr(sys, "frozen", False):
        # The build tool bundles the chosen env file as config.yaml (--add-data <staged>/config.yaml:.).
        return Path(sys._MEIPASS) / "config.yaml"  # type: ignore[attr-defined]
    return SERVICE_ROOT / "config.yaml"


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a config file; an explicit path (from --config) wins over the default."""
    config_path = Path(path) if path is not None else default_config_path()
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if path is not None:
            hint = "check the --config path"
        elif getattr(sys, "frozen", False):
            hint = "the build must bundle it with --add-data <staged>/config.yaml:."
        else:
            hint = "restore it in python-service/ or pass --config PATH"
        raise ConfigError(f"{config_path}: config file not found; {hint}") from None
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: invalid YAML: {exc}") from None
    return parse_config(data, str(config_path))


# --------------------------------------------------------------------------- build info


@dataclasses.dataclass(frozen=True)
class BuildInfo:
    version: str
    env: str
    arch: str
    commit: str


def build_info() -> BuildInfo:
    """Version and build provenance: build-info.json when frozen, electron-app/package.json from source."""
    if getattr(sys, "frozen", False):
        path = Path(sys._MEIPASS) / "build-info.json"  # type: ignore[attr-defined]
        data = _read_json_object(path, "the build must bundle it with --add-data <staged>/build-info.json:.")
        return BuildInfo(
            version=_require_version(data, path),
            env=str(data.get("env", "unknown")),
            arch=str(data.get("arch", platform.machine())),
            commit=str(data.get("commit", "unknown")),
        )
    # electron-app/package.json is the product's single source of truth for the version.
    data = _read_json_object(PACKAGE_JSON, "run from a full checkout of the monorepo")
    return BuildInfo(_require_version(data, PACKAGE_JSON), "source", platform.machine(), "unknown")


def _read_json_object(path: Path, hint: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServiceError(f"{path}: not found; {hint}") from None
    except (OSError, ValueError) as exc:
        raise ServiceError(f"{path}: cannot read JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ServiceError(f"{path}: must contain a JSON object")
    return data


def _require_version(data: dict[str, Any], path: Path) -> str:
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise ServiceError(f"{path}: missing \"version\" string")
    return version


def version_line(service: str) -> str:
    info = build_info()
    return f"{service} {info.version} ({info.env}, {info.arch})"


# --------------------------------------------------------------------------- CLI plumbing


def base_parser(service: str, description: str) -> argparse.ArgumentParser:
    """Flags every service has: --version, --config, --self-test."""
    parser = argparse.ArgumentParser(prog=service, description=description)
    parser.add_argument("--version", action="store_true", help="print version and build info, then exit")
    parser.add_argument("--config", metavar="PATH", help="config file (default: the bundled config.yaml)")
    parser.add_argument("--self-test", action="store_true",
                        help="check config and bundled dependencies, then exit 0 (ok) or 1")
    return parser


def port_arg(minimum: int) -> Callable[[str], int]:
    """argparse type for a TCP port; minimum 0 allows 'ephemeral'."""
    def parse(text: str) -> int:
        if not text.isdigit() or not minimum <= int(text) <= 65535:
            raise argparse.ArgumentTypeError(f"must be a port number {minimum}-65535, got {text!r}")
        return int(text)
    return parse


def print_version(service: str) -> int:
    try:
        print(version_line(service))
    except ServiceError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        return 1
    return 0


def setup_logging() -> None:
    # force=True: escpos calls logging.basicConfig() at import time; our format must win.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # websockets logs every failed handshake at INFO; reconnect attempts are logged by us.
    logging.getLogger("websockets").setLevel(logging.WARNING)


def run_self_test(service: str, check: Callable[[], None]) -> int:
    """Run a service's self-test; print 'self-test ok: <service> <version>' or the reason it failed."""
    try:
        check()
        version = build_info().version
    # Deliberately broad: a frozen bundle missing a module or data file fails
    # with ImportError/FileNotFoundError/KeyError, and the self-test must report it.
    except Exception as exc:  # noqa: BLE001
        print(f"self-test FAILED: {service}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"self-test ok: {service} {version}")
    return 0


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run main(stop) until it returns; SIGINT/SIGTERM set `stop` so it can shut down cleanly."""
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)
    asyncio.run(runner())


# --------------------------------------------------------------------------- backoff


def backoff_delay(attempt: int, min_seconds: float, max_seconds: float,
                  rand: Callable[[], float] = random.random) -> float:
    """Delay before reconnect attempt `attempt` (0-based): exponential growth with "equal jitter".

    The ceiling doubles each attempt (2*min, 4*min, ...) up to max_seconds and
    the delay is drawn from [ceiling/2, ceiling], never below min_seconds. Jitter
    stops a fleet of terminals from reconnecting in lockstep after a server
    restart; the lower half-bound keeps the delay actually growing.
    """
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    # Cap the exponent: 2.0 ** 1100 overflows, and 2**32 * min already exceeds any sane max.
    ceiling = min(max_seconds, min_seconds * 2.0 ** min(attempt + 1, 32))
    floor = max(min_seconds, ceiling / 2)
    return floor + rand() * (ceiling - floor)


# --------------------------------------------------------------------------- local JSON-over-WebSocket services


class RequestError(ServiceError):
    """A request that cannot be served; its message goes back to the client."""


RequestHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def json_request_handler(handle: RequestHandler,
                         logger: logging.Logger) -> Callable[[ServerConnection], Awaitable[None]]:
    """Wrap `handle` as a websockets connection handler: one JSON reply per JSON request.

    Bad input and ServiceErrors become {"type": "error", "message": ...} replies so
    the client always gets an answer and the connection stays usable.
    """
    async def connection_handler(websocket: ServerConnection) -> None:
        # A client vanishing mid-request is its problem, not a server error worth a traceback.
        with contextlib.suppress(ConnectionClosed):
            async for raw in websocket:
                reply = await _dispatch(handle, raw, logger)
                await websocket.send(json.dumps(reply))
    return connection_handler


async def _dispatch(handle: RequestHandler, raw: str | bytes, logger: logging.Logger) -> dict[str, Any]:
    try:
        request = json.loads(raw)
    except ValueError as exc:
        return error_reply(f"message is not valid JSON: {exc}")
    if not isinstance(request, dict):
        return error_reply("message must be a JSON object")
    try:
        return await handle(request)
    except ServiceError as exc:
        logger.warning("request failed: %s", exc)
        return error_reply(str(exc))
    # A bug in one request must not kill the server; log it with a traceback.
    except Exception as exc:
        logger.exception("unexpected error handling request")
        return error_reply(f"internal error: {type(exc).__name__}: {exc}")


def error_reply(message: str) -> dict[str, Any]:
    return {"type": "error", "message": message}


def bound_port(server: Server) -> int:
    """The port a server listens on; differs from the requested one when that was 0 (ephemeral)."""
    return int(server.sockets[0].getsockname()[1])


def loopback_url(port: int) -> str:
    return f"ws://{LOOPBACK}:{port}"
