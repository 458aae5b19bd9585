"""print_service: renders kitchen order tickets as ESC/POS and sends them to the printer.

Long-running (default): a loopback WebSocket server taking {"type": "print", "order": {...}}.
One-shot: --ticket ORDER.json [--output PATH].
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from escpos.printer import Dummy
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from kt_common import (
    LOOPBACK,
    SELF_TEST_TIMEOUT,
    FileTarget,
    PrinterTarget,
    RequestError,
    ServiceError,
    TcpTarget,
    base_parser,
    bound_port,
    json_request_handler,
    load_config,
    loopback_url,
    port_arg,
    print_version,
    run_self_test,
    run_until_signal,
    setup_logging,
)

SERVICE = "print_service"
log = logging.getLogger(SERVICE)

PRINTER_TIMEOUT = 10.0  # seconds to connect to and write to a network printer
DEFAULT_RESTAURANT = "KitchnTabs"


class OrderError(RequestError):
    """The order JSON does not describe a printable ticket."""


# --------------------------------------------------------------------------- order


@dataclasses.dataclass(frozen=True)
class Item:
    name: str
    qty: int
    notes: str


@dataclasses.dataclass(frozen=True)
class Order:
    id: str
    table: str
    restaurant: str
    created_at: dt.datetime
    items: list[Item]
    notes: str

    @classmethod
    def from_json(cls, data: Any) -> Order:
        """Validate an order as sent by the kitchen server; errors name the offending field."""
        if not isinstance(data, dict):
            raise OrderError(f"order must be a JSON object, got {type(data).__name__}")
        raw_items = data.get("items")
        if not isinstance(raw_items, list) or not raw_items:
            raise OrderError("order.items must be a non-empty list of {\"name\", \"qty\", \"notes\"?}")
        return cls(
            id=_scalar(data, "id", "order.id", required=True),
            table=_scalar(data, "table", "order.table"),
            restaurant=_scalar(data, "restaurant", "order.restaurant") or DEFAULT_RESTAURANT,
            created_at=_timestamp(data.get("created_at")),
            items=[_item(raw, f"order.items[{i}]") for i, raw in enumerate(raw_items)],
            notes=_scalar(data, "notes", "order.notes"),
        )


def _scalar(data: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    """A string or integer field as text; "" when absent and optional."""
    value = data.get(key)
    if value is None and not required:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise OrderError(f"{where} must be a non-empty string or integer, got {value!r}")
    return str(value)


def _item(raw: Any, where: str) -> Item:
    if not isinstance(raw, dict):
        raise OrderError(f"{where} must be an object with \"name\" and \"qty\", got {raw!r}")
    name = _scalar(raw, "name", f"{where}.name", required=True)
    qty = raw.get("qty")
    if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
        raise OrderError(f"{where}.qty must be a positive integer, got {qty!r}")
    return Item(name, qty, _scalar(raw, "notes", f"{where}.notes"))


def _timestamp(value: Any) -> dt.datetime:
    if value is None:
        return dt.datetime.now()
    try:
        return dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise OrderError(f"order.created_at must be an ISO 8601 timestamp, got {value!r}") from None


# --------------------------------------------------------------------------- rendering


def make_printer(profile: str) -> Dummy:
    """An in-memory ESC/POS printer; loading a profile reads escpos's bundled capabilities.json."""
    try:
        return Dummy(profile=profile)
    except KeyError:
        raise ServiceError(f"PRINTER_PROFILE {profile!r} is not a python-escpos profile; "
                           "use 'default' or a name from escpos's capabilities.json") from None


def render_ticket(order: Order, profile: str) -> bytes:
    """The complete ESC/POS byte stream for one kitchen ticket."""
    printer = make_printer(profile)
    width = printer.profile.get_columns("a")
    rule = "-" * width

    printer.hw("INIT")  # ESC @: start from a known state whatever the last job left set
    printer.set(align="center", bold=True, double_width=True, double_height=True)
    printer.textln(order.restaurant)
    # ESC ! 0 (normal size) also clears emphasis on real printers, so re-assert bold.
    printer.set(normal_textsize=True, bold=True)
    if order.table:
        printer.textln(f"Mesa {order.table}")
    printer.textln(f"Orden {order.id}")
    printer.set(bold=False)
    printer.textln(order.created_at.strftime("%Y-%m-%d %H:%M"))
    printer.set(align="left")
    printer.textln(rule)
    for item in order.items:
        printer.set(bold=True)
        printer.textln(f"{item.qty} x {item.name}")
        printer.set(bold=False)
        if item.notes:
            printer.textln(f"   > {item.notes}")
    printer.textln(rule)
    if order.notes:
        printer.textln(f"Notas: {order.notes}")
    printer.set(align="center")
    printer.textln(f"{sum(item.qty for item in order.items)} productos - KitchnTabs")
    printer.cut()  # feeds past the tear bar, then GS V
    return printer.output


# --------------------------------------------------------------------------- output


def send_to_target(ticket: bytes, target: PrinterTarget) -> None:
    """Deliver ticket bytes; raises ServiceError naming the target on failure."""
    try:
        if isinstance(target, TcpTarget):
            with socket.create_connection((target.host, target.port), timeout=PRINTER_TIMEOUT) as conn:
                conn.sendall(ticket)
        else:
            _write_atomically(target.path, ticket)
    except OSError as exc:
        raise ServiceError(f"cannot print to {target}: {exc.strerror or exc}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    # Temp file in the same directory + rename, so a reader never sees half a ticket.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- server


class PrintServer:
    """Handles print requests; one ticket at a time so jobs never interleave on the printer."""

    def __init__(self, target: PrinterTarget, profile: str) -> None:
        self.target = target
        self.profile = profile
        self._lock = asyncio.Lock()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("type") != "print":
            raise RequestError(f"unsupported message type {request.get('type')!r}; expected 'print'")
        order = Order.from_json(request.get("order"))
        ticket = render_ticket(order, self.profile)
        async with self._lock:
            await asyncio.to_thread(send_to_target, ticket, self.target)
        log.info("printed order %s (%d bytes) to %s", order.id, len(ticket), self.target)
        return {"type": "printed", "order_id": order.id, "bytes": len(ticket)}


async def run(target: PrinterTarget, profile: str, port: int, stop: asyncio.Event,
              on_listening: Callable[[int], None] | None = None) -> None:
    """Serve print requests on 127.0.0.1:port until `stop` is set."""
    server = PrintServer(target, profile)
    async with serve(json_request_handler(server.handle, log), LOOPBACK, port) as ws_server:
        bound = bound_port(ws_server)
        log.info("listening on %s:%d, printing to %s", LOOPBACK, bound, target)
        if on_listening:
            on_listening(bound)
        await stop.wait()
        log.info("shutting down")


# --------------------------------------------------------------------------- self-test


SELF_TEST_ORDER = {"id": "self-test", "table": "1", "created_at": "2025-01-01T12:00:00",
                   "items": [{"name": "Prueba ñandú", "qty": 1, "notes": "sin cebolla"}]}


async def _round_trip(profile: str, out: Path) -> None:
    """Print one ticket through the real WebSocket server into a file."""
    stop = asyncio.Event()
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    service = asyncio.create_task(run(FileTarget(out), profile, 0, stop, listening.set_result))
    try:
        async with asyncio.timeout(SELF_TEST_TIMEOUT):
            async with connect(loopback_url(await listening), proxy=None) as client:
                await client.send(json.dumps({"type": "print", "order": SELF_TEST_ORDER}))
                reply = json.loads(await client.recv())
    finally:
        stop.set()
        await service
    if reply.get("type") != "printed" or reply.get("bytes") != out.stat().st_size:
        raise AssertionError(f"unexpected reply {reply!r}")


def self_test(config_path: str | None) -> None:
    config = load_config(config_path)
    # Rendering loads escpos's bundled capabilities.json: fails if the bundle lacks escpos data.
    ticket = render_ticket(Order.from_json(SELF_TEST_ORDER), config.printer_profile)
    if not ticket.startswith(b"\x1b@") or b"\x1dV" not in ticket:
        raise AssertionError("rendered ticket lacks ESC @ or the cut command")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_round_trip(config.printer_profile, Path(tmp) / "ticket.bin"))


# --------------------------------------------------------------------------- CLI


def print_one(ticket_path: str, target: PrinterTarget, profile: str) -> None:
    try:
        data = json.loads(Path(ticket_path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ServiceError(f"{ticket_path}: cannot read order: {exc.strerror}") from None
    except ValueError as exc:
        raise ServiceError(f"{ticket_path}: not valid JSON: {exc}") from None
    try:
        order = Order.from_json(data)
    except OrderError as exc:
        raise ServiceError(f"{ticket_path}: {exc}") from None
    ticket = render_ticket(order, profile)
    send_to_target(ticket, target)
    log.info("printed order %s (%d bytes) to %s", order.id, len(ticket), target)


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(SERVICE, "Render kitchen tickets as ESC/POS and send them to the printer.")
    parser.add_argument("--port", type=port_arg(0), metavar="N",
                        help="WebSocket port; 0 = ephemeral (default: PRINT_SERVICE_PORT)")
    parser.add_argument("--ticket", metavar="ORDER.json", help="print one order from a JSON file and exit")
    parser.add_argument("--output", metavar="PATH",
                        help="with --ticket: write the ESC/POS bytes to PATH instead of PRINTER_TARGET")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output and not args.ticket:
        parser.error("--output only applies to --ticket")
    if args.version:
        return print_version(SERVICE)
    setup_logging()
    if args.self_test:
        return run_self_test(SERVICE, lambda: self_test(args.config))
    try:
        config = load_config(args.config)
        if args.ticket:
            target = FileTarget(Path(args.output).absolute()) if args.output else config.printer
            print_one(args.ticket, target, config.printer_profile)
            return 0
        make_printer(config.printer_profile)  # fail at startup, not at the first order
    except ServiceError as exc:
        log.error("%s", exc)
        return 1
    port = config.print_service_port if args.port is None else args.port
    try:
        run_until_signal(lambda stop: run(config.printer, config.printer_profile, port, stop))
    except OSError as exc:  # the port is already taken
        log.error("cannot listen on %s:%d: %s", LOOPBACK, port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
