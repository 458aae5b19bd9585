"""kt_service: backoff, the kitchen bridge end to end over real WebSockets, and the CLI."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve

import kt_service
from kt_common import backoff_delay, bound_port, load_config, loopback_url, version_line

# --------------------------------------------------------------------------- backoff


def test_backoff_first_attempt_between_min_and_twice_min() -> None:
    assert backoff_delay(0, 1.0, 60.0, rand=lambda: 0.0) == 1.0
    assert backoff_delay(0, 1.0, 60.0, rand=lambda: 1.0) == 2.0


def test_backoff_grows_exponentially_until_max() -> None:
    floors = [backoff_delay(n, 1.0, 60.0, rand=lambda: 0.0) for n in range(8)]
    ceilings = [backoff_delay(n, 1.0, 60.0, rand=lambda: 1.0) for n in range(8)]
    assert floors == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert ceilings == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_backoff_always_within_bounds() -> None:
    rng = random.Random(42)
    for attempt in [*range(100), 10_000]:  # huge attempt counts must not overflow
        delay = backoff_delay(attempt, 0.5, 30.0, rand=rng.random)
        assert 0.5 <= delay <= 30.0


def test_backoff_jitter_spreads_delays() -> None:
    delays = {backoff_delay(3, 1.0, 60.0) for _ in range(50)}
    assert len(delays) > 40
    assert all(8.0 <= d <= 16.0 for d in delays)


def test_backoff_equal_bounds_and_invalid_bounds() -> None:
    assert backoff_delay(5, 2.0, 2.0) == 2.0
    with pytest.raises(ValueError):
        backoff_delay(0, 0.0, 1.0)
    with pytest.raises(ValueError):
        backoff_delay(0, 5.0, 1.0)


# --------------------------------------------------------------------------- fakes


class FakeKitchen:
    """A kitchen server that can be stopped and restarted on the same port."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.port = 0
        self.clients: set[ServerConnection] = set()
        self.paths: list[str] = []
        self.connected = asyncio.Event()  # set once a client's handler is running

    async def start(self) -> None:
        self.server = await serve(self.handler, "127.0.0.1", self.port)
        self.port = bound_port(self.server)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        self.connected.clear()

    async def handler(self, websocket: ServerConnection) -> None:
        self.paths.append(websocket.request.path)
        self.clients.add(websocket)
        self.connected.set()
        try:
            await websocket.wait_closed()
        finally:
            self.clients.discard(websocket)

    async def send(self, message: Any) -> None:
        data = message if isinstance(message, str) else json.dumps(message)
        for websocket in list(self.clients):
            await websocket.send(data)


class FakeLocalService:
    """Stands in for print_service/tts_service: records requests and acknowledges them."""

    def __init__(self, reply_type: str) -> None:
        self.reply_type = reply_type
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.port = 0

    async def handler(self, websocket: ServerConnection) -> None:
        async for raw in websocket:
            await self.received.put(json.loads(raw))
            await websocket.send(json.dumps({"type": self.reply_type}))

    async def next(self, predicate: Callable[[dict[str, Any]], bool] = lambda m: True) -> dict[str, Any]:
        while not predicate(message := await self.received.get()):
            pass
        return message


async def next_message(websocket: ClientConnection, predicate: Callable[[Any], bool]) -> Any:
    while not predicate(message := json.loads(await websocket.recv())):
        pass
    return message


def status(connected: bool, url: str) -> dict[str, Any]:
    return {"type": "status", "connected": connected, "server": url}


# --------------------------------------------------------------------------- bridge


ORDER = {"id": "A-17", "table": "12", "items": [{"name": "Tacos al pastor", "qty": 2}]}


def test_bridge_forwards_orders_and_reconnects(write_config) -> None:
    config = load_config(write_config(RECONNECT_MIN_SECONDS=0.05, RECONNECT_MAX_SECONDS=0.2))

    async def scenario() -> None:
        kitchen, printer, tts = FakeKitchen(), FakeLocalService("printed"), FakeLocalService("spoken")
        await kitchen.start()
        async with serve(printer.handler, "127.0.0.1", 0) as print_server, \
                serve(tts.handler, "127.0.0.1", 0) as tts_server:
            url = f"ws://127.0.0.1:{kitchen.port}/ws/kitchen"
            settings = kt_service.Settings.from_config(
                config, server_url=url, local_port=0,
                print_port=bound_port(print_server), tts_port=bound_port(tts_server))
            stop = asyncio.Event()
            listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            service = asyncio.create_task(kt_service.run(settings, stop, listening.set_result))

            async with connect(loopback_url(await listening), proxy=None) as local:
                first = json.loads(await local.recv())
                assert first["type"] == "status" and first["server"] == url
                if not first["connected"]:
                    await next_message(local, lambda m: m == status(True, url))
                await kitchen.connected.wait()
                assert kitchen.paths == ["/ws/kitchen"]
                spoken = await tts.next()
                assert spoken == {"type": "speak", "text": config.speech_connected_message}

                # An order reaches Electron verbatim, the printer as a job, tts as an announcement.
                await kitchen.send({"type": "order", "order": ORDER})
                assert json.loads(await local.recv()) == {"type": "order", "order": ORDER}
                assert await printer.next() == {"type": "print", "order": ORDER}
                assert await tts.next() == {"type": "speak", "text": "Nueva orden para la mesa 12"}

                # Announcements only go to tts; anything else is still broadcast.
                await kitchen.send({"type": "announce", "text": "Mesa 4 lista"})
                assert json.loads(await local.recv())["type"] == "announce"
                assert await tts.next() == {"type": "speak", "text": "Mesa 4 lista"}
                await kitchen.send("not json")
                assert await local.recv() == "not json"
                assert printer.received.empty()

                # Kitchen server restarts: status goes false, then true again after a reconnect.
                await kitchen.stop()
                await next_message(local, lambda m: m == status(False, url))
                await kitchen.start()
                await next_message(local, lambda m: m == status(True, url))
                await kitchen.connected.wait()
                assert await tts.next() == {"type": "speak", "text": config.speech_connected_message}

            stop.set()
            await service
        await kitchen.stop()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_forwarding_failures_are_not_fatal(write_config) -> None:
    config = load_config(write_config())

    async def scenario() -> None:
        kitchen = FakeKitchen()
        await kitchen.start()
        # Nothing listens on the print/tts ports: take a free port and release it.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            dead_port = sock.getsockname()[1]
        settings = kt_service.Settings.from_config(
            config, server_url=loopback_url(kitchen.port), local_port=0, print_port=dead_port, tts_port=dead_port)
        stop = asyncio.Event()
        listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        service = asyncio.create_task(kt_service.run(settings, stop, listening.set_result))
        async with connect(loopback_url(await listening), proxy=None) as local:
            await next_message(local, lambda m: m.get("connected") is True)
            await kitchen.connected.wait()
            for n in range(2):
                order = {**ORDER, "id": n}
                await kitchen.send({"type": "order", "order": order})
                assert json.loads(await local.recv()) == {"type": "order", "order": order}
        assert not service.done()
        stop.set()
        await service
        await kitchen.stop()

    asyncio.run(asyncio.wait_for(scenario(), 20))


# --------------------------------------------------------------------------- CLI (subprocess)


def test_version_subprocess(run_service, tmp_path) -> None:
    result = run_service("kt_service.py", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == version_line("kt_service") + "\n"


def test_self_test_subprocess(run_service) -> None:
    result = run_service("kt_service.py", "--self-test")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("self-test ok: kt_service ")


def test_self_test_reports_bad_config(run_service, write_config) -> None:
    result = run_service("kt_service.py", "--self-test", "--config", str(write_config(WS_SCHEME="http")))
    assert result.returncode == 1
    assert "self-test FAILED: kt_service" in result.stderr and "WS_SCHEME must be 'ws' or 'wss'" in result.stderr


def test_sigterm_exits_cleanly(start_service) -> None:
    # Port 1 refuses connections, so the service sits in its reconnect loop.
    proc, port = start_service("kt_service.py", "--local-port", "0", "--server", "ws://127.0.0.1:1/ws")
    assert port > 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_invalid_server_url(run_service) -> None:
    result = run_service("kt_service.py", "--server", "http://example.com/")
    assert result.returncode == 1
    assert "invalid kitchen server URL" in result.stderr
