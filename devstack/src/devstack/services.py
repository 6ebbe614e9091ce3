"""Real processes for tests and tools: started, waited for until ready, stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx


class ServiceStartError(RuntimeError):
    """The process exited or never answered its readiness check."""


@dataclass
class ManagedProcess:
    """A child process whose output goes to a log file; ready once `ready_url` answers 200.

    With `own_session` it gets a process group of its own, so a stop that has to
    SIGKILL also takes down what it forked (a worker pool's workers).
    """

    command: Sequence[str]
    ready_url: str
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    cwd: Path | None = None
    own_session: bool = False
    startup_timeout_s: float = 30.0
    stop_timeout_s: float = 15.0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        if self.log_path is None:
            name = Path(self.command[-1]).name.replace(":", "-")
            handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
            os.close(handle)
            self.log_path = Path(path)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            list(self.command),
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            start_new_session=self.own_session,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceStartError(f"{' '.join(self.command)} exited:\n{self.output()}")
            try:
                if httpx.get(self.ready_url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServiceStartError(f"{' '.join(self.command)} never got ready:\n{self.output()}")

    def output(self) -> str:
        """What the process printed so far."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                if self.own_session:
                    os.killpg(self.process.pid, signal.SIGKILL)
                else:
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServiceProcess(ManagedProcess):
    """A `uvicorn --factory` process on 127.0.0.1:`port`, started once /livez answers
    (the process serves; /health also asks its dependencies, which a test may have down)."""

    def __init__(self, factory: str, port: int, env: Mapping[str, str] | None = None) -> None:
        self.factory = factory
        self.port = port
        super().__init__(
            command=[
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            ready_url=f"http://127.0.0.1:{port}/livez",
            env=env or {},
            stop_timeout_s=10.0,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
