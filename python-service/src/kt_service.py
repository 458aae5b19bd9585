"""kt_service: bridge between the kitchen server and the local KitchnTabs services.

- Keeps a WebSocket client connection to the kitchen server, reconnecting
  forever with jittered exponential backoff.
- Serves a local WebSocket for the Electron main process: every kitchen
  message is broadcast to it, plus {"type": "status", ...} on every change.
- Turns {"type": "order"} messages into print jobs (print_service) and
  announcements (tts_service); {"type": "announce"} only goes to tts_service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.uri import parse_uri

from kt_common import (
    LOOPBACK,
    SELF_TEST_TIMEOUT,
    Config,
    ServiceError,
    backoff_delay,
    base_parser,
    bound_port,
    load_config,
    loopback_url,
    port_arg,
    print_version,
    run_self_test,
    run_until_signal,
    setup_logging,
)

SERVICE = "kt_service"
log = logging.getLogger(SERVICE)

# Local services answer within milliseconds once connected; speaking may take a while.
LOCAL_OPEN_TIMEOUT = 2.0
PRINT_REPLY_TIMEOUT = 15.0
TTS_REPLY_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Settings:
    server_url: str
    local_host: str
    local_port: int  # 0 = ephemeral
    print_url: str
    tts_url: str
    new_order_message: str
    connected_message: str
    reconnect_min: float
    reconnect_max: float

    @classmethod
    def from_config(cls, config: Config, server_url: str | None = None, local_port: int | None = None,
                    print_port: int | None = None, tts_port: int | None = None) -> Settings:
        """Settings from a config file, with command-line overrides where given."""
        return cls(
            server_url=server_url or config.kitchen_url,
            local_host=config.local_ws_host,
            local_port=config.local_ws_port if local_port is None else local_port,
            print_url=loopback_url(print_port or config.print_service_port),
            tts_url=loopback_url(tts_port or config.tts_service_port),
            new_order_message=config.speech_new_order_message,
            connected_message=config.speech_connected_message,
            reconnect_min=config.reconnect_min_seconds,
            reconnect_max=config.reconnect_max_seconds,
        )


class Forwarder:
    """Delivers messages, one at a time and in order, to a local service.

    A queue + single worker keeps print jobs in arrival order and never stalls
    the kitchen connection while a ticket prints or a phrase is spoken.
    Delivery failures are logged, never raised: a missing printer must not
    take the kitchen link down.
    """

    def __init__(self, name: str, url: str, reply_timeout: float) -> None:
        self.name = name
        self.url = url
        self.reply_timeout = reply_timeout
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def submit(self, message: dict[str, Any]) -> None:
        self._queue.put_nowait(message)

    async def run(self) -> None:
        while True:
            await self._deliver(await self._queue.get())

    async def _deliver(self, message: dict[str, Any]) -> None:
        try:
            # proxy=None: a system HTTP(S)_PROXY must never capture loopback traffic.
            async with connect(self.url, proxy=None, open_timeout=LOCAL_OPEN_TIMEOUT) as websocket:
                await websocket.send(json.dumps(message))
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that races with completion, and shutdown would hang.
                async with asyncio.timeout(self.reply_timeout):
                    reply = json.loads(await websocket.recv())
        except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
            log.warning("%s at %s: could not deliver %s: %s", self.name, self.url,
                        message.get("type"), str(exc) or type(exc).__name__)
            return
        if isinstance(reply, dict) and reply.get("type") == "error":
            log.warning("%s rejected %s: %s", self.name, message.get("type"), reply.get("message"))
        else:
            log.info("%s: %s", self.name, reply)


class Bridge:
    """The kitchen connection, the local clients and the forwarders of one kt_service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients: set[ServerConnection] = set()
        self.connected = False
        self.printer = Forwarder("print_service", settings.print_url, PRINT_REPLY_TIMEOUT)
        self.tts = Forwarder("tts_service", settings.tts_url, TTS_REPLY_TIMEOUT)

    def status(self) -> str:
        return json.dumps({"type": "status", "connected": self.connected, "server": self.settings.server_url})

    def set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            broadcast(self.clients, self.status())

    async def handle_local_client(self, websocket: ServerConnection) -> None:
        # Status first, then join the broadcast set, so a client never sees
        # kitchen messages before it knows whether the kitchen is connected.
        # broadcast() writes synchronously, so nothing can slip in between.
        broadcast([websocket], self.status())
        self.clients.add(websocket)
        try:
            async for _ in websocket:
                pass  # Electron only listens; anything it sends is ignored.
        except ConnectionClosed:
            pass  # the client went away without a close handshake: not our error
        finally:
            self.clients.discard(websocket)

    def handle_kitchen_message(self, raw: str | bytes) -> None:
        broadcast(self.clients, raw)
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("kitchen server sent non-JSON message, broadcast only: %.80r", raw)
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "order" and isinstance(message.get("order"), dict):
            order = message["order"]
            self.printer.submit({"type": "print", "order": order})
            self.tts.submit({"type": "speak", "text": self.new_order_text(order)})
        elif kind == "announce" and isinstance(message.get("text"), str):
            self.tts.submit({"type": "speak", "text": message["text"]})
        elif kind in ("order", "announce"):
            log.warning("ignoring malformed %r message from kitchen server", kind)

    def new_order_text(self, order: dict[str, Any]) -> str:
        # Placeholders were validated at config load: only {table} and {order}.
        return self.settings.new_order_message.format(
            table=order.get("table", ""), order=order.get("id", "")).strip()

    async def kitchen_loop(self) -> None:
        """Stay connected to the kitchen server forever."""
        url = self.settings.server_url
        attempt = 0
        while True:
            try:
                async with connect(url) as websocket:
                    log.info("connected to kitchen server %s", url)
                    attempt = 0
                    self.set_connected(True)
                    self.tts.submit({"type": "speak", "text": self.settings.connected_message})
                    async for raw in websocket:
                        self.handle_kitchen_message(raw)
                reason = "closed by server"
            except ConnectionClosed as exc:
                reason = f"connection lost: {exc}"
            except (OSError, TimeoutError, WebSocketException) as exc:
                reason = f"cannot connect: {str(exc) or type(exc).__name__}"
            self.set_connected(False)
            delay = backoff_delay(attempt, self.settings.reconnect_min, self.settings.reconnect_max)
            attempt += 1
            log.warning("kitchen server %s: %s; retrying in %.1fs", url, reason, delay)
            await asyncio.sleep(delay)


async def run(settings: Settings, stop: asyncio.Event,
              on_listening: Callable[[int], None] | None = None) -> None:
    """Run kt_service until `stop` is set. on_listening receives the bound local port."""
    bridge = Bridge(settings)
    async with serve(bridge.handle_local_client, settings.local_host, settings.local_port) as server:
        port = bound_port(server)
        log.info("listening on %s:%d", settings.local_host, port)
        if on_listening:
            on_listening(port)
        tasks = [asyncio.create_task(coro) for coro in
                 (bridge.kitchen_loop(), bridge.printer.run(), bridge.tts.run())]
        await stop.wait()
        log.info("shutting down")
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


# --------------------------------------------------------------------------- self-test


async def _self_test(config: Config) -> None:
    """End-to-end over loopback: fake kitchen -> kt_service -> local client, print and tts sinks."""
    order = {"id": "self-test", "table": "1", "items": [{"name": "test", "qty": 1}]}
    client_ready = asyncio.Event()
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def kitchen(websocket: ServerConnection) -> None:
        await client_ready.wait()  # else the order could be broadcast before anyone listens
        await websocket.send(json.dumps({"type": "order", "order": order}))
        await websocket.wait_closed()

    async def sink(websocket: ServerConnection) -> None:
        # Shutdown may cancel a delivery mid-flight; that abort is expected here.
        with contextlib.suppress(ConnectionClosed):
            async for raw in websocket:
                await received.put(json.loads(raw))
                await websocket.send(json.dumps({"type": "ok"}))

    async with serve(kitchen, LOOPBACK, 0) as kitchen_server, serve(sink, LOOPBACK, 0) as sink_server:
        sink_port = bound_port(sink_server)
        settings = dataclasses.replace(
            Settings.from_config(config, server_url=loopback_url(bound_port(kitchen_server)),
                                 print_port=sink_port, tts_port=sink_port),
            local_host=LOOPBACK, local_port=0)
        stop = asyncio.Event()
        listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        service = asyncio.create_task(run(settings, stop, listening.set_result))
        try:
            async with connect(loopback_url(await listening), proxy=None) as client:
                while (message := json.loads(await client.recv())).get("type") == "status":
                    client_ready.set()
                if message != {"type": "order", "order": order}:
                    raise AssertionError(f"local client got {message!r}, expected the order")
            # Both forwarders must deliver: the print job and at least one speak request.
            kinds: set[str] = set()
            while kinds != {"print", "speak"}:
                kinds.add((await received.get())["type"])
        finally:
            stop.set()
            await service


def self_test(config_path: str | None) -> None:
    config = load_config(config_path)
    parse_uri(config.kitchen_url)
    async def bounded() -> None:
        async with asyncio.timeout(SELF_TEST_TIMEOUT):
            await _self_test(config)
    try:
        asyncio.run(bounded())
    except TimeoutError:
        raise TimeoutError(f"loopback round trip did not complete within {SELF_TEST_TIMEOUT}s") from None


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(SERVICE, "Bridge the kitchen server to the local KitchnTabs services.")
    parser.add_argument("--server", metavar="URL", help="kitchen server URL (default: from config)")
    parser.add_argument("--local-port", type=port_arg(0), metavar="N",
                        help="local WebSocket port for Electron; 0 = ephemeral (default: LOCAL_WS_PORT)")
    parser.add_argument("--print-port", type=port_arg(1), metavar="N",
                        help="print_service port (default: PRINT_SERVICE_PORT)")
    parser.add_argument("--tts-port", type=port_arg(1), metavar="N",
                        help="tts_service port (default: TTS_SERVICE_PORT)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        return print_version(SERVICE)
    setup_logging()
    if args.self_test:
        return run_self_test(SERVICE, lambda: self_test(args.config))
    try:
        config = load_config(args.config)
        settings = Settings.from_config(config, args.server, args.local_port, args.print_port, args.tts_port)
        parse_uri(settings.server_url)
    except InvalidURI as exc:
        log.error("invalid kitchen server URL: %s; fix --server or the WS_* keys of the config", exc)
        return 1
    except ServiceError as exc:
        log.error("%s", exc)
        return 1
    try:
        run_until_signal(lambda stop: run(settings, stop))
    except OSError as exc:  # the local port is taken, or LOCAL_WS_HOST is not an address of this machine
        log.error("cannot listen on %s:%d: %s", settings.local_host, settings.local_port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
