"""Staff accounts: names and argon2 hashes in a JSON file that the CLI writes (never in
git; the site only reads it). A file, not a database: the web app talks to the services
only through their APIs, and a desk has a handful of accounts."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# Checked when a name is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class StaffError(Exception):
    """Something the user of the CLI can fix; printed without a traceback."""


class StaffStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _accounts(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def _save(self, accounts: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: a reader never sees half a file.
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False) as file:
            json.dump(accounts, file, indent=2, sort_keys=True)
        os.chmod(file.name, 0o600)
        os.replace(file.name, self.path)

    def add(self, name: str, password: str) -> None:
        if not _NAME.fullmatch(name):
            raise StaffError(
                "a name is 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
            )
        if len(password) < MIN_PASSWORD:
            raise StaffError(f"a password has at least {MIN_PASSWORD} characters")
        self._save(self._accounts() | {name: _hasher.hash(password)})

    def remove(self, name: str) -> bool:
        accounts = self._accounts()
        if accounts.pop(name, None) is None:
            return False
        self._save(accounts)
        return True

    def verify(self, name: str, password: str) -> bool:
        """Whether `password` is `name`'s, in about the same time either way."""
        stored = self._accounts().get(name)
        try:
            return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False
