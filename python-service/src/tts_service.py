"""tts_service: speaks kitchen announcements with espeak-ng (or espeak).

Long-running (default): a loopback WebSocket server taking
{"type": "speak", "text": ...} or {"type": "speak", "key": "SPEECH_WELCOME_MESSAGE"}.
One-shot: --say TEXT [--wav PATH], or --say-key KEY.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from kt_common import (
    LOOPBACK,
    SELF_TEST_TIMEOUT,
    Config,
    RequestError,
    ServiceError,
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

SERVICE = "tts_service"
log = logging.getLogger(SERVICE)

ENGINES = ("espeak-ng", "espeak")  # in order of preference
SPEAKER = "speaker"  # SPEECH_OUTPUT value meaning "play on the default audio device"
SPEAKABLE_KEYS = ("SPEECH_WELCOME_MESSAGE", "SPEECH_CONNECTED_MESSAGE")
ENGINE_TIMEOUT = 120.0  # seconds; bounds a stuck audio device, not normal speech
NO_ENGINE = ("no speech engine found: install espeak-ng (apt-get install espeak-ng) "
             "or add the directory containing espeak-ng or espeak to the service's PATH")


class SpeechError(ServiceError):
    """The text could not be spoken or rendered to a WAV file."""


def find_engine() -> str | None:
    """Full path of the preferred speech engine on PATH, or None."""
    for name in ENGINES:
        path = shutil.which(name)
        if path:
            return path
    return None


def speak(text: str, language: str, output: str) -> None:
    """Speak `text` on the speaker, or render it to the WAV file `output`."""
    if not text.strip():
        raise SpeechError("nothing to say: text is empty")
    engine = find_engine()
    if engine is None:
        raise SpeechError(NO_ENGINE)
    # "--" ends option parsing: text from the network must never be read as a flag like "-w /path".
    if output == SPEAKER:
        _run_engine([engine, "-v", language, "--", text])
        return
    wav = Path(output)
    try:
        fd, tmp = tempfile.mkstemp(dir=wav.parent, prefix=f".{wav.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise SpeechError(f"cannot write {wav}: {exc.strerror}; fix SPEECH_OUTPUT or --wav") from None
    try:
        _run_engine([engine, "-v", language, "-w", tmp, "--", text])
        os.replace(tmp, wav)  # readers never see a half-written WAV
    except BaseException:
        os.unlink(tmp)
        raise


def _engine_env() -> dict[str, str] | None:
    """Environment for the engine: ours, minus the library path PyInstaller injects.

    A frozen binary prepends its extraction directory to LD_LIBRARY_PATH (saving
    the original as LD_LIBRARY_PATH_ORIG); the system espeak-ng must load the
    system's libraries, not the copies bundled for Python.
    """
    if not getattr(sys, "frozen", False):
        return None
    env = dict(os.environ)
    original = env.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is None:
        env.pop("LD_LIBRARY_PATH", None)
    else:
        env["LD_LIBRARY_PATH"] = original
    return env


def _run_engine(command: list[str]) -> None:
    try:
        # The exit status is examined below, with the engine's stderr in the message.
        result = subprocess.run(command, capture_output=True, text=True, timeout=ENGINE_TIMEOUT,
                                env=_engine_env(), check=False)
    except subprocess.TimeoutExpired:
        raise SpeechError(f"{command[0]} did not finish within {ENGINE_TIMEOUT:.0f}s") from None
    except OSError as exc:
        raise SpeechError(f"cannot run {command[0]}: {exc.strerror}") from None
    # espeak-ng reports a bad voice on stderr with exit status 1.
    if result.returncode != 0:
        detail = result.stderr.strip() or f"exit status {result.returncode}"
        raise SpeechError(f"{Path(command[0]).name} failed: {detail} (SPEECH_LANGUAGE={command[2]!r})")


class Speaker:
    """Speaks configured or given text; one utterance at a time so phrases never overlap."""

    def __init__(self, config: Config, output: str | None = None) -> None:
        self.language = config.speech_language
        self.output = output or config.speech_output
        self.messages = {key: getattr(config, key.lower()) for key in SPEAKABLE_KEYS}
        self._lock = asyncio.Lock()

    async def say(self, text: str) -> None:
        async with self._lock:
            await asyncio.to_thread(speak, text, self.language, self.output)

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("type") != "speak":
            raise RequestError(f"unsupported message type {request.get('type')!r}; expected 'speak'")
        text = self.resolve(request)
        await self.say(text)
        return {"type": "spoken", "text": text, "output": self.output}

    def resolve(self, request: dict[str, Any]) -> str:
        """The text to speak: request["text"], or the configured message request["key"]."""
        if "key" in request:
            if request["key"] not in self.messages:
                raise RequestError(f"unknown key {request['key']!r}; speakable keys: {', '.join(SPEAKABLE_KEYS)}")
            return self.messages[request["key"]]
        text = request.get("text")
        if not isinstance(text, str) or not text.strip():
            raise RequestError("speak needs a non-empty \"text\" string or a \"key\"")
        return text


async def run(speaker: Speaker, port: int, stop: asyncio.Event,
              on_listening: Callable[[int], None] | None = None) -> None:
    """Serve speak requests on 127.0.0.1:port until `stop` is set."""
    async with serve(json_request_handler(speaker.handle, log), LOOPBACK, port) as server:
        bound = bound_port(server)
        log.info("listening on %s:%d, speaking %r to %s", LOOPBACK, bound, speaker.language, speaker.output)
        if on_listening:
            on_listening(bound)
        try:
            await speaker.say(speaker.messages["SPEECH_WELCOME_MESSAGE"])
        except SpeechError as exc:
            log.warning("welcome message not spoken: %s", exc)  # keep serving: kt_service still needs us
        await stop.wait()
        log.info("shutting down")


# --------------------------------------------------------------------------- self-test


async def _round_trip(speaker: Speaker) -> dict[str, Any]:
    stop = asyncio.Event()
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    service = asyncio.create_task(run(speaker, 0, stop, listening.set_result))
    try:
        async with asyncio.timeout(SELF_TEST_TIMEOUT):
            async with connect(loopback_url(await listening), proxy=None) as client:
                await client.send(json.dumps({"type": "speak", "key": "SPEECH_CONNECTED_MESSAGE"}))
                return json.loads(await client.recv())
    finally:
        stop.set()
        await service


def self_test(config_path: str | None) -> None:
    config = load_config(config_path)
    engine = find_engine()
    if engine is None:
        # Build containers have no espeak-ng; the binary is still complete without it.
        print(f"WARNING: {NO_ENGINE}", file=sys.stderr)
    else:
        print(f"speech engine: {engine}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        # A WAV target, so a self-test on a live terminal does not talk to the kitchen.
        wav = Path(tmp) / "self-test.wav"
        reply = asyncio.run(_round_trip(Speaker(config, output=str(wav))))
        if engine is None:
            if reply.get("type") != "error" or NO_ENGINE not in reply.get("message", ""):
                raise AssertionError(f"expected the no-engine error, got {reply!r}")
        elif reply.get("type") != "spoken" or wav.stat().st_size == 0:
            raise AssertionError(f"speech failed: {reply!r}")


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(SERVICE, "Speak kitchen announcements with espeak-ng.")
    parser.add_argument("--port", type=port_arg(0), metavar="N",
                        help="WebSocket port; 0 = ephemeral (default: TTS_SERVICE_PORT)")
    say = parser.add_mutually_exclusive_group()
    say.add_argument("--say", metavar="TEXT", help="speak TEXT and exit")
    say.add_argument("--say-key", choices=SPEAKABLE_KEYS, help="speak a configured message and exit")
    parser.add_argument("--wav", metavar="PATH", help="write speech to this WAV file instead of SPEECH_OUTPUT")
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
        speaker = Speaker(config, output=str(Path(args.wav).absolute()) if args.wav else None)
        if args.say is not None or args.say_key:
            text = args.say if args.say is not None else speaker.messages[args.say_key]
            speak(text, speaker.language, speaker.output)
            return 0
    except ServiceError as exc:
        log.error("%s", exc)
        return 1
    port = config.tts_service_port if args.port is None else args.port
    try:
        run_until_signal(lambda stop: run(speaker, port, stop))
    except OSError as exc:  # the port is already taken
        log.error("cannot listen on %s:%d: %s", LOOPBACK, port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
