"""tts_service: real espeak-ng speech to WAV, the no-engine error, the WebSocket server and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import wave
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

import tts_service
from kt_common import load_config, loopback_url
from tts_service import NO_ENGINE, Speaker, SpeechError

NO_ENGINE_PREFIX = "no speech engine found: install espeak-ng (apt-get install espeak-ng)"


@pytest.fixture
def espeak() -> str:
    """The real engine. Missing espeak-ng fails the test on purpose: never a silent skip."""
    engine = shutil.which("espeak-ng")
    if engine is None:
        pytest.fail("espeak-ng is not installed; these tests need it: apt-get install espeak-ng")
    return engine


@pytest.fixture
def no_engine_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A PATH on which neither espeak-ng nor espeak exists."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return str(empty)


def assert_wav(path: Path) -> None:
    with wave.open(str(path), "rb") as wav:
        assert wav.getnframes() > 0
        assert wav.getframerate() == 22050


def test_speak_to_wav(espeak: str, tmp_path: Path) -> None:
    wav = tmp_path / "hola.wav"
    tts_service.speak("Nueva orden para la mesa doce", "es", str(wav))
    assert_wav(wav)
    assert list(tmp_path.iterdir()) == [wav]  # the temp file was renamed, not left behind


def test_text_is_never_parsed_as_engine_options(espeak: str, tmp_path: Path) -> None:
    wav, evil = tmp_path / "out.wav", tmp_path / "evil.wav"
    tts_service.speak(f"-w {evil}", "es", str(wav))
    assert_wav(wav)
    assert not evil.exists()


def test_bad_language_is_reported(espeak: str, tmp_path: Path) -> None:
    with pytest.raises(SpeechError, match="SPEECH_LANGUAGE='zz-nope'"):
        tts_service.speak("hola", "zz-nope", str(tmp_path / "x.wav"))
    assert list(tmp_path.iterdir()) == []


def test_no_engine_error(no_engine_path: str, tmp_path: Path) -> None:
    assert tts_service.find_engine() is None
    with pytest.raises(SpeechError) as err:
        tts_service.speak("hola", "es", str(tmp_path / "x.wav"))
    assert str(err.value) == NO_ENGINE
    assert NO_ENGINE.startswith(NO_ENGINE_PREFIX)


def test_frozen_engine_does_not_inherit_bundle_library_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/tmp/_MEI123")  # what the PyInstaller bootloader sets
    monkeypatch.delenv("LD_LIBRARY_PATH_ORIG", raising=False)
    assert "LD_LIBRARY_PATH" not in tts_service._engine_env()
    monkeypatch.setenv("LD_LIBRARY_PATH_ORIG", "/opt/vendor/lib")
    assert tts_service._engine_env()["LD_LIBRARY_PATH"] == "/opt/vendor/lib"


# --------------------------------------------------------------------------- WebSocket server


async def exchange(speaker: Speaker, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stop = asyncio.Event()
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    service = asyncio.create_task(tts_service.run(speaker, 0, stop, listening.set_result))
    replies = []
    async with connect(loopback_url(await listening), proxy=None) as client:
        for request in requests:
            await client.send(json.dumps(request))
            replies.append(json.loads(await client.recv()))
    stop.set()
    await service
    return replies


def test_server_speaks_text_and_configured_keys(espeak: str, tmp_path: Path) -> None:
    config = load_config()
    wav = tmp_path / "speech.wav"
    speaker = Speaker(config, output=str(wav))
    replies = asyncio.run(asyncio.wait_for(exchange(speaker, [
        {"type": "speak", "text": "Mesa cuatro lista"},
        {"type": "speak", "key": "SPEECH_WELCOME_MESSAGE"},
        {"type": "speak", "key": "WS_HOST"},
        {"type": "speak"},
        {"type": "print"},
    ]), 30))
    assert replies[0] == {"type": "spoken", "text": "Mesa cuatro lista", "output": str(wav)}
    assert replies[1] == {"type": "spoken", "text": config.speech_welcome_message, "output": str(wav)}
    assert replies[2]["type"] == "error" and "unknown key 'WS_HOST'" in replies[2]["message"]
    assert replies[3]["type"] == "error" and "non-empty \"text\"" in replies[3]["message"]
    assert replies[4]["type"] == "error" and "expected 'speak'" in replies[4]["message"]
    assert_wav(wav)


def test_server_without_engine_replies_with_the_error(no_engine_path: str, tmp_path: Path) -> None:
    speaker = Speaker(load_config(), output=str(tmp_path / "speech.wav"))
    [reply] = asyncio.run(asyncio.wait_for(exchange(speaker, [{"type": "speak", "text": "hola"}]), 10))
    assert reply == {"type": "error", "message": NO_ENGINE}


# --------------------------------------------------------------------------- CLI (subprocess)


def test_one_shot_say_to_wav(espeak: str, run_service, tmp_path: Path) -> None:
    wav = tmp_path / "say.wav"
    result = run_service("tts_service.py", "--say", "Hola cocina", "--wav", str(wav))
    assert result.returncode == 0, result.stderr
    assert_wav(wav)
    result = run_service("tts_service.py", "--say-key", "SPEECH_CONNECTED_MESSAGE", "--wav", str(wav))
    assert result.returncode == 0, result.stderr
    assert_wav(wav)


def test_one_shot_without_engine_exits_1(no_engine_path: str, run_service, tmp_path: Path) -> None:
    result = run_service("tts_service.py", "--say", "hola", "--wav", str(tmp_path / "x.wav"), env=dict(os.environ))
    assert result.returncode == 1
    assert NO_ENGINE_PREFIX in result.stderr


def test_self_test_without_engine_warns_but_passes(no_engine_path: str, run_service) -> None:
    result = run_service("tts_service.py", "--self-test", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert f"WARNING: {NO_ENGINE_PREFIX}" in result.stderr
    assert result.stdout.startswith("self-test ok: tts_service ")


def test_self_test_with_engine(espeak: str, run_service) -> None:
    result = run_service("tts_service.py", "--self-test")
    assert result.returncode == 0, result.stderr
    assert f"speech engine: {espeak}" in result.stderr
    assert run_service("tts_service.py", "--version").stdout.startswith("tts_service ")


def test_server_sigterm_exits_cleanly(start_service, tmp_path: Path) -> None:
    # A WAV output so the welcome message does not need a sound card.
    proc, _ = start_service("tts_service.py", "--port", "0", "--wav", str(tmp_path / "welcome.wav"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
