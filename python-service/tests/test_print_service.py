"""print_service: ESC/POS rendering, file and TCP targets, the WebSocket server and the CLI."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

import print_service
from kt_common import FileTarget, ServiceError, TcpTarget, loopback_url
from print_service import Order, OrderError, render_ticket

ORDER: dict[str, Any] = {
    "id": "A-17",
    "restaurant": "Casa Tacos",
    "table": 12,
    "created_at": "2025-03-01T13:45:00",
    "items": [
        {"name": "Tacos al pastor", "qty": 2, "notes": "sin cebolla"},
        {"name": "Agua de horchata", "qty": 1},
    ],
    "notes": "Cliente con prisa",
}

ESC_INIT = b"\x1b@"
BOLD_ON, BOLD_OFF = b"\x1bE\x01", b"\x1bE\x00"
FULL_CUT = b"\x1dV\x00"


@pytest.fixture(scope="module")
def ticket() -> bytes:
    return render_ticket(Order.from_json(ORDER), "default")


# --------------------------------------------------------------------------- rendering


def test_ticket_escpos_structure(ticket: bytes) -> None:
    assert ticket.startswith(ESC_INIT)
    assert ticket.endswith(FULL_CUT)
    for text in (b"Casa Tacos", b"Mesa 12", b"Orden A-17", b"2025-03-01 13:45",
                 b"2 x Tacos al pastor", b"1 x Agua de horchata", b"> sin cebolla", b"Cliente con prisa", b"3 productos"):
        assert text in ticket, text


def test_header_is_bold(ticket: bytes) -> None:
    bold_on = ticket.index(BOLD_ON)
    bold_off = ticket.index(BOLD_OFF)
    assert bold_on < ticket.index(b"Casa Tacos") < ticket.index(b"Orden A-17") < bold_off
    assert bold_off < ticket.index(b"2025-03-01 13:45")  # the timestamp is not bold
    # ESC ! 0 (normal size) clears emphasis on real printers: bold must be re-enabled after it.
    size_reset = ticket.index(b"\x1b!\x00", ticket.index(b"Casa Tacos"))
    assert ticket[size_reset:].index(BOLD_ON) < ticket[size_reset:].index(b"Mesa 12")


def test_spanish_text_is_encoded_for_the_printer() -> None:
    order = Order.from_json({**ORDER, "items": [{"name": "Jalapeño", "qty": 1}]})
    assert b"Jalape\xa4o" in render_ticket(order, "default")  # ñ in code page 437


@pytest.mark.parametrize(("order", "message"), [
    ([], "order must be a JSON object"),
    ({"items": [{"name": "x", "qty": 1}]}, "order.id must be a non-empty string or integer"),
    ({"id": 1, "items": []}, "order.items must be a non-empty list"),
    ({"id": 1, "items": [{"name": "x", "qty": 0}]}, "order.items[0].qty must be a positive integer, got 0"),
    ({"id": 1, "items": [{"name": "x", "qty": "2"}]}, "order.items[0].qty must be a positive integer, got '2'"),
    ({"id": 1, "items": [{"qty": 1}]}, "order.items[0].name must be a non-empty string"),
    ({"id": 1, "items": [{"name": "x", "qty": 1}], "created_at": "yesterday"}, "order.created_at must be an ISO 8601"),
])
def test_invalid_orders(order: Any, message: str) -> None:
    with pytest.raises(OrderError) as err:
        Order.from_json(order)
    assert message in str(err.value)


def test_unknown_profile() -> None:
    with pytest.raises(ServiceError, match="PRINTER_PROFILE 'nope' is not a python-escpos profile"):
        render_ticket(Order.from_json(ORDER), "nope")


# --------------------------------------------------------------------------- targets


def test_file_target_writes_ticket_atomically(tmp_path: Path, ticket: bytes) -> None:
    out = tmp_path / "ticket.bin"
    out.write_bytes(b"previous ticket")
    print_service.send_to_target(ticket, FileTarget(out))
    assert out.read_bytes() == ticket
    assert list(tmp_path.iterdir()) == [out]  # no temp file left behind


def test_tcp_target_receives_the_same_bytes(ticket: bytes) -> None:
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        def printer() -> None:
            conn, _ = server.accept()
            with conn:
                received.append(b"".join(iter(lambda: conn.recv(4096), b"")))
        thread = threading.Thread(target=printer)
        thread.start()
        print_service.send_to_target(ticket, TcpTarget("127.0.0.1", server.getsockname()[1]))
        thread.join(timeout=5)
    assert received == [ticket]


def test_unreachable_printer_is_a_clear_error(ticket: bytes) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServiceError, match=rf"cannot print to tcp://127.0.0.1:{port}: Connection refused"):
        print_service.send_to_target(ticket, TcpTarget("127.0.0.1", port))


# --------------------------------------------------------------------------- WebSocket server


def test_server_round_trip(tmp_path: Path, ticket: bytes) -> None:
    out = tmp_path / "ticket.bin"

    async def scenario() -> list[dict[str, Any]]:
        stop = asyncio.Event()
        listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        service = asyncio.create_task(print_service.run(FileTarget(out), "default", 0, stop, listening.set_result))
        replies = []
        async with connect(loopback_url(await listening), proxy=None) as client:
            for request in ({"type": "print", "order": ORDER}, {"type": "print", "order": {"id": 1}},
                            "{not json", {"type": "speak"}):
                await client.send(request if isinstance(request, str) else json.dumps(request))
                replies.append(json.loads(await client.recv()))
        stop.set()
        await service
        return replies

    printed, bad_order, bad_json, wrong_type = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert printed == {"type": "printed", "order_id": "A-17", "bytes": len(ticket)}
    assert out.read_bytes() == ticket
    assert bad_order["type"] == "error" and "order.items must be a non-empty list" in bad_order["message"]
    assert bad_json["type"] == "error" and "not valid JSON" in bad_json["message"]
    assert wrong_type == {"type": "error", "message": "unsupported message type 'speak'; expected 'print'"}


# --------------------------------------------------------------------------- CLI (subprocess)


@pytest.fixture
def order_file(tmp_path: Path) -> Path:
    path = tmp_path / "order.json"
    path.write_text(json.dumps(ORDER))
    return path


def test_one_shot_to_output(run_service, order_file: Path, tmp_path: Path, ticket: bytes) -> None:
    out = tmp_path / "out.bin"
    result = run_service("print_service.py", "--ticket", str(order_file), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == ticket


def test_one_shot_to_configured_tcp_printer(run_service, order_file: Path, write_config, ticket: bytes) -> None:
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        config = write_config(PRINTER_TARGET=f"tcp://127.0.0.1:{server.getsockname()[1]}")
        def printer() -> None:
            conn, _ = server.accept()
            with conn:
                received.append(b"".join(iter(lambda: conn.recv(4096), b"")))
        thread = threading.Thread(target=printer)
        thread.start()
        result = run_service("print_service.py", "--config", str(config), "--ticket", str(order_file))
        thread.join(timeout=5)
    assert result.returncode == 0, result.stderr
    assert received == [ticket]


def test_one_shot_bad_order_json(run_service, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": 1, "items": [')
    result = run_service("print_service.py", "--ticket", str(bad), "--output", str(tmp_path / "out.bin"))
    assert result.returncode == 1
    assert f"{bad}: not valid JSON" in result.stderr
    bad.write_text('{"id": 1, "items": [{"name": "Tacos", "qty": -1}]}')
    result = run_service("print_service.py", "--ticket", str(bad), "--output", str(tmp_path / "out.bin"))
    assert result.returncode == 1
    assert f"{bad}: order.items[0].qty must be a positive integer, got -1" in result.stderr
    assert not (tmp_path / "out.bin").exists()


def test_version_and_self_test(run_service) -> None:
    assert run_service("print_service.py", "--version").stdout.startswith("print_service ")
    result = run_service("print_service.py", "--self-test")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("self-test ok: print_service ")


def test_server_sigterm_exits_cleanly(start_service) -> None:
    proc, _ = start_service("print_service.py", "--port", "0")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
