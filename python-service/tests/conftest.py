"""Shared test setup: import the services from src/ exactly as the entry scripts do."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

SERVICE_ROOT = Path(__file__).resolve().parents[1]
SRC = SERVICE_ROOT / "src"
sys.path.insert(0, str(SRC))

ENV_FILES = ("config.yaml", "config.ngrok.yaml", "config.prod.yaml")


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a copy of the default config.yaml with some keys replaced; returns its path."""
    def write(name: str = "config.test.yaml", **overrides: Any) -> Path:
        data = yaml.safe_load((SERVICE_ROOT / "config.yaml").read_text(encoding="utf-8"))
        data.update(overrides)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path
    return write


@pytest.fixture
def start_service():
    """Start `python src/<script> args...` and wait for its 'listening on 127.0.0.1:PORT' log line.

    Returns (process, port). Processes still running at teardown are killed.
    """
    processes: list[subprocess.Popen[str]] = []

    def start(script: str, *args: str, timeout: float = 10.0) -> tuple[subprocess.Popen[str], int]:
        proc = subprocess.Popen([sys.executable, str(SRC / script), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        processes.append(proc)
        lines: queue.Queue[str] = queue.Queue()
        # A reader thread, so a service that never logs cannot hang the test.
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{script} did not report 'listening on' within {timeout}s") from None
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                return proc, int(match.group(1))

    yield start
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def run_service():
    """Run `python src/<script> args...` to completion, as Electron or the build tool would."""
    def run(script: str, *args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(SRC / script), *args], capture_output=True, text=True,
                              env=env, cwd=cwd, timeout=30, check=False)
    return run
