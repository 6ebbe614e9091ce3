"""No key or password in any log line of a test run.

The secrets are what the run hands its services: the values of environment variables named
like keys, passwords, secrets or tokens, and the passwords inside URLs (the environment of
the test process, and of every process started through `ManagedProcess` or handed to
`devstack.pytest_plugin.watch_process`). The log lines are every record the test process
emits (the apps under test run in it) and everything those processes printed. The pytest
plugin fails the session's last test if any secret shows up, naming where.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

SECRET_NAME = re.compile(r"KEY|PASSWORD|SECRET|TOKEN", re.IGNORECASE)
# Shorter values ("1", "true", a port) would be found everywhere without being secrets.
MIN_LENGTH = 8
MAX_KEPT_LINES = 1_000_000
# What every record has; anything else was passed as `extra` and is logged too.
STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def secrets_in(env: Mapping[str, str]) -> set[str]:
    found = set()
    for name, value in env.items():
        if SECRET_NAME.search(name) and len(value) >= MIN_LENGTH:
            found.add(value)
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                continue
            if password and len(password) >= MIN_LENGTH:
                found.add(password)
    return found


class SecretWatch(logging.Handler):
    """A root handler keeping what was logged, to be searched for secrets at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.lines: list[tuple[str, str]] = []
        self.followed: list[tuple[str, Path]] = []

    def learn(self, env: Mapping[str, str]) -> None:
        self.secrets |= secrets_in(env)

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) >= MAX_KEPT_LINES:
            return
        try:
            text = record.getMessage()
        except Exception:  # a record whose args do not fit its message: keep what it has
            text = str(record.msg)
        extras = (
            value
            for name, value in vars(record).items()
            if name not in STANDARD_ATTRIBUTES and isinstance(value, str)
        )
        self.lines.append((record.name, " ".join((text, *extras))))

    def keep(self, where: str, output: str) -> None:
        self.lines.extend((where, line) for line in output.splitlines())

    def follow(self, where: str, env: Mapping[str, str], log_path: Path) -> None:
        """A process started with `env`, printing to `log_path`: read when the watch ends."""
        self.learn(env)
        self.followed.append((where, log_path))

    def leaks(self) -> list[str]:
        """`where: the line` for each line holding a secret (the secret itself masked)."""
        for where, path in self.followed:
            if path.exists():
                self.keep(where, path.read_text(errors="replace"))
        self.followed.clear()
        return [
            f"{where}: {_masked(line, self.secrets)}"
            for where, line in self.lines
            if any(secret in line for secret in self.secrets)
        ]


def _masked(line: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        line = line.replace(secret, "***")
    return line[:300]
