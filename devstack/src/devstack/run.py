"""`make run` / `make migrate`: the whole stack on one machine, with nothing but Python.

Databases and Redis come from `BOOKS_DATABASE_URL`, `ORDERS_DATABASE_URL` and
`REDIS_URL` when set; otherwise an embedded PostgreSQL and an embedded Valkey
start with their data under `.data/` on fixed local ports, so a second run finds
the same data. Without `SMTP_URL`, a local SMTP sink keeps the workers' mail as
`.eml` files under `.data/mail/`. The service processes run under honcho, which prefixes
their logs (relayed a burst at a time: `devstack.output`) and stops them all on Ctrl-C or
SIGTERM; the embedded servers stop last. A process that dies (crash, OOM, `kill -9`) is
started again with backoff (`devstack.respawn`); only Ctrl-C or SIGTERM stops the stack.

The predecessor's names work too: `BOOKS_DB_DSN` and `DATABASE_URL` (orders) name the
databases when ours are unset. `PORT` names one service's port, so each API process is
given its own `BOOKS_PORT` / `ORDERS_PORT` (which win over a `PORT` in the environment).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import honcho.manager
import psycopg
from honcho.manager import Manager
from psycopg import sql

from devstack import monitoring
from devstack.mail import MailSink
from devstack.output import burst_process
from devstack.servers import EmbeddedPostgres, EmbeddedValkey, PortInUseError, port_is_free
from servicekit.api_keys import Role, new_token, register_key

REPO_ROOT = Path(__file__).resolve().parents[3]


class StackError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    database_env: str
    database: str
    # The predecessor's name of `database_env`, read when ours is unset.
    database_alias: str

    @property
    def configured_database(self) -> tuple[str, str] | None:
        """(variable, URL) of the database the environment names, ours first."""
        for variable in (self.database_env, self.database_alias):
            if url := os.environ.get(variable):
                return variable, url
        return None

    @property
    def port_env(self) -> str:
        return f"{self.name.upper()}_PORT"

    @property
    def alembic_ini(self) -> Path:
        return REPO_ROOT / self.name / "alembic.ini"


@dataclass(frozen=True)
class Worker:
    """A background process of the stack (relays, RQ workers) with its metrics port."""

    name: str
    module: str
    metrics_port_env: str
    metrics_port: int


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path
    postgres_port: int
    redis_port: int
    smtp_port: int
    services: tuple[Service, ...]
    workers: tuple[Worker, ...]
    prometheus_port: int
    web_port: int

    @classmethod
    def from_env(cls) -> StackConfig:
        env = os.environ
        return cls(
            data_dir=Path(env.get("STACK_DATA_DIR", REPO_ROOT / ".data")).resolve(),
            postgres_port=int(env.get("STACK_POSTGRES_PORT", "5433")),
            redis_port=int(env.get("STACK_REDIS_PORT", "6380")),
            smtp_port=int(env.get("STACK_SMTP_PORT", "8025")),
            prometheus_port=int(env.get("STACK_PROMETHEUS_PORT", "9090")),
            web_port=int(env.get("WEB_PORT", "8000")),
            services=(
                Service(
                    "books",
                    int(env.get("BOOKS_PORT", "8001")),
                    "BOOKS_DATABASE_URL",
                    "books_db",
                    "BOOKS_DB_DSN",
                ),
                Service(
                    "orders",
                    int(env.get("ORDERS_PORT", "8082")),
                    "ORDERS_DATABASE_URL",
                    "orders_db",
                    "DATABASE_URL",
                ),
            ),
            workers=(
                Worker(
                    "books-relay",
                    "books.relay",
                    "BOOKS_RELAY_METRICS_PORT",
                    int(env.get("BOOKS_RELAY_METRICS_PORT", "9103")),
                ),
                Worker(
                    "orders-relay",
                    "orders.relay",
                    "ORDERS_RELAY_METRICS_PORT",
                    int(env.get("ORDERS_RELAY_METRICS_PORT", "9101")),
                ),
                Worker(
                    "workers",
                    "workers.worker",
                    "WORKERS_METRICS_PORT",
                    int(env.get("WORKERS_METRICS_PORT", "9102")),
                ),
            ),
        )

    def service(self, name: str) -> Service:
        return next(service for service in self.services if service.name == name)


def _database_url(server_url: str, database: str) -> str:
    return server_url.rsplit("/", 1)[0] + f"/{database}"


def stack_database_url(config: StackConfig, name: str) -> str:
    """The database of service `name`: the environment's, or the one `make run` keeps."""
    service = config.service(name)
    if configured := service.configured_database:
        return configured[1]
    server = EmbeddedPostgres(config.data_dir / "postgres", config.postgres_port)
    return _database_url(server.url, service.database)


def _ensure_database(server_url: str, database: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            print(f"created database {database}")


def _check_reachable(name: str, url: str) -> None:
    try:
        with psycopg.connect(url, connect_timeout=3):
            pass
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[0]
        raise StackError(f"cannot reach {name} ({url}): {reason}") from None


@contextmanager
def databases(config: StackConfig) -> Iterator[dict[str, str]]:
    """Environment with a database URL per service, starting PostgreSQL if needed."""
    env: dict[str, str] = {}
    missing = [s for s in config.services if not s.configured_database]
    with ExitStack() as stack:
        if missing:
            server = EmbeddedPostgres(config.data_dir / "postgres", config.postgres_port)
            print(f"starting embedded PostgreSQL on 127.0.0.1:{config.postgres_port} ...")
            stack.enter_context(server)
            for service in missing:
                _ensure_database(server.url, service.database)
                env[service.database_env] = _database_url(server.url, service.database)
        for service in config.services:
            # A URL from the environment reaches the processes with it, under its own name.
            _check_reachable(
                *(service.configured_database or (service.database_env, env[service.database_env]))
            )
        yield env


@contextmanager
def redis(config: StackConfig) -> Iterator[dict[str, str]]:
    if url := os.environ.get("REDIS_URL"):
        yield {"REDIS_URL": url}
        return
    print(f"starting embedded Valkey on 127.0.0.1:{config.redis_port} ...")
    password = kept_secret(config, "redis_password")
    with EmbeddedValkey(config.data_dir / "valkey", config.redis_port, password=password) as server:
        yield {"REDIS_URL": server.url}


@contextmanager
def mail(config: StackConfig) -> Iterator[dict[str, str]]:
    """`SMTP_URL` for the workers: the environment's, or a local sink's."""
    if url := os.environ.get("SMTP_URL"):
        yield {"SMTP_URL": url}
        return
    if not port_is_free(config.smtp_port):
        raise StackError(
            f"port {config.smtp_port} for smtp is taken: "
            "stop what listens there or set STACK_SMTP_PORT"
        )
    with MailSink(config.data_dir / "mail", config.smtp_port) as sink:
        yield {"SMTP_URL": sink.url, "STACK_MAIL_DIR": str(sink.folder)}


def migrate(config: StackConfig, env: dict[str, str]) -> None:
    for service in config.services:
        print(f"migrating {service.name} ...")
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(service.alembic_ini), "upgrade", "head"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"migrating {service.name} failed:\n{result.stderr.strip()}")


def kept_secret(
    config: StackConfig, name: str, generate: Callable[[], str] = lambda: secrets.token_urlsafe(32)
) -> str:
    """A secret generated on the first run and kept (owner-only) with the stack's data."""
    path = config.data_dir / name
    if not path.exists():
        path.write_text(generate())
        path.chmod(0o600)
    return path.read_text().strip()


def dev_key_file(role: Role) -> str:
    """The file under the data folder that keeps the development key of `role`."""
    return f"api_key_{role}"


def dev_keys(config: StackConfig, db_env: dict[str, str]) -> dict[str, str]:
    """A development API key per role: made on the first run, kept with the stack's data,
    registered in both services' databases on every run (a no-op once there, and a fresh
    database gets them again), and handed to the web app (its shop's client key, its
    desk's desk key). `BOOKSTORE_<ROLE>_KEY` names them in the banner and for curl."""
    urls = [
        (service.configured_database or (service.database_env, db_env[service.database_env]))[1]
        for service in config.services
    ]
    keys: dict[str, str] = {}
    for role in Role:
        token = kept_secret(config, dev_key_file(role), new_token)
        register_key(urls, token=token, role=role, name=f"make-run-{role}")
        keys[f"BOOKSTORE_{role.upper()}_KEY"] = token
    return keys | {
        "WEB_CLIENT_KEY": os.environ.get("WEB_CLIENT_KEY") or keys["BOOKSTORE_CLIENT_KEY"],
        "WEB_STAFF_KEY": os.environ.get("WEB_STAFF_KEY") or keys["BOOKSTORE_DESK_KEY"],
    }


def service_key(config: StackConfig) -> dict[str, str]:
    """The key the services demand on internal calls: from the environment, or kept."""
    return {"SERVICE_KEY": os.environ.get("SERVICE_KEY") or kept_secret(config, "service_key")}


def web_secrets(config: StackConfig) -> dict[str, str]:
    """The web app's cookie-signing key (generated once, kept with the stack's data) and
    its staff accounts' file, which `python -m web staff add NAME` writes."""
    return {
        "WEB_SECRET_KEY": os.environ.get("WEB_SECRET_KEY") or kept_secret(config, "web_secret_key"),
        "WEB_STAFF_FILE": os.environ.get("WEB_STAFF_FILE")
        or str(config.data_dir / "web" / "staff.json"),
    }


def stack_redis_url(config: StackConfig) -> str:
    """The URL of the embedded Valkey `make run` starts, with the password it keeps."""
    path = config.data_dir / "redis_password"
    login = f":{path.read_text().strip()}@" if path.exists() else ""
    return f"redis://{login}127.0.0.1:{config.redis_port}/0"


def without_password(url: str) -> str:
    """The URL to print: its password, if any, replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    login = f"{parts.username or ''}:***@"
    return urlunsplit(parts._replace(netloc=login + host))


def _print_banner(config: StackConfig, env: dict[str, str], *, with_prometheus: bool) -> None:
    lines = ["", "Bookstore is starting:"]
    web = f"http://127.0.0.1:{config.web_port}"
    lines.append(f"  {'web':<12} {web}   desk {web}/desk")
    lines.append(
        f"  {'':<12} staff accounts: WEB_STAFF_FILE={env['WEB_STAFF_FILE']} "
        "python -m web staff add NAME"
    )
    for service in config.services:
        base = f"http://127.0.0.1:{service.port}"
        lines.append(f"  {service.name:<12} {base}   docs {base}/docs   metrics {base}/metrics")
    for worker in config.workers:
        lines.append(f"  {worker.name:<12} metrics http://127.0.0.1:{worker.metrics_port}/metrics")
    if with_prometheus:
        lines.append(f"  {'prometheus':<12} http://127.0.0.1:{config.prometheus_port}")
    lines.append(f"  {'redis':<12} {without_password(env['REDIS_URL'])}")
    if folder := env.get("STACK_MAIL_DIR"):
        lines.append(f"  {'mail':<12} {folder}   smtp {env['SMTP_URL']}")
    else:
        lines.append(f"  {'mail':<12} {env['SMTP_URL']}")
    lines.append(f"  {'data':<12} {config.data_dir}")
    # Development keys, printed so curl can use them (see README, Security).
    for role in Role:
        variable = f"BOOKSTORE_{role.upper()}_KEY"
        lines.append(f"  {'api key' if role is Role.ADMIN else '':<12} {variable}={env[variable]}")
    lines.append("Press Ctrl-C to stop.\n")
    print("\n".join(lines), flush=True)


# honcho SIGKILLs what has not stopped 5 s after SIGTERM; an RQ worker's warm shutdown
# finishes its current job first (up to the relay's 30 s job timeout).
honcho.manager.KILL_WAIT = 35


def respawned(name: str, *command: str) -> str:
    """The command line that runs `command` (by default `python -m name`) and starts it
    again when it dies."""
    command = command or (sys.executable, "-m", name)
    return "exec " + shlex.join([sys.executable, "-m", "devstack.respawn", name, "--", *command])


def _add_prometheus(manager: Manager, config: StackConfig) -> bool:
    """`MONITORING=1`: a local Prometheus scraping every process, with the alert rules."""
    targets = (
        {s.name: s.port for s in config.services}
        | {w.name: w.metrics_port for w in config.workers}
        | {"web": config.web_port}
    )
    command = monitoring.local_prometheus_command(
        targets, config.data_dir / "prometheus", port=config.prometheus_port
    )
    if command is None:
        print("MONITORING=1: no prometheus binary (apt-get install prometheus); skipped")
        return False
    if not port_is_free(config.prometheus_port):
        raise StackError(
            f"port {config.prometheus_port} for prometheus is taken: set STACK_PROMETHEUS_PORT"
        )
    manager.add_process("prometheus", respawned("prometheus", *command), cwd=str(REPO_ROOT))
    return True


def serve(config: StackConfig, env: dict[str, str]) -> int:
    ports = [
        *[(s.name, s.port, s.port_env) for s in config.services],
        *[(w.name, w.metrics_port, w.metrics_port_env) for w in config.workers],
        ("web", config.web_port, "WEB_PORT"),
    ]
    for name, port, variable in ports:
        if not port_is_free(port):
            raise StackError(
                f"port {port} for {name} is taken: stop what listens there or set {variable}"
            )
    env = {
        **os.environ,
        **env,
        "ORDERS_BOOKS_URL": f"http://127.0.0.1:{config.service('books').port}",
        "WORKERS_BOOKS_URL": f"http://127.0.0.1:{config.service('books').port}",
        "WORKERS_ORDERS_URL": f"http://127.0.0.1:{config.service('orders').port}",
        **{worker.metrics_port_env: str(worker.metrics_port) for worker in config.workers},
    }
    manager = Manager()
    manager._process_ctor = burst_process  # its output relayed a burst at a time
    for service in config.services:
        # `python -m books` is what the image runs; ours name the port, so a `PORT` left in
        # the environment (one service's, in the predecessor) cannot send both to it.
        listen = {f"{service.name.upper()}_HOST": "127.0.0.1", service.port_env: str(service.port)}
        manager.add_process(
            service.name, respawned(service.name), env=env | listen, cwd=str(REPO_ROOT)
        )
    for worker in config.workers:
        manager.add_process(
            worker.name,
            respawned(worker.name, sys.executable, "-m", worker.module),
            env=env,
            cwd=str(REPO_ROOT),
        )
    site = {
        **web_secrets(config),
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": str(config.web_port),
        "WEB_BOOKS_URL": f"http://127.0.0.1:{config.service('books').port}",
        "WEB_ORDERS_URL": f"http://127.0.0.1:{config.service('orders').port}",
    }
    env |= site
    manager.add_process("web", respawned("web"), env=env, cwd=str(REPO_ROOT))
    with_prometheus = os.environ.get("MONITORING") == "1" and _add_prometheus(manager, config)
    _print_banner(config, env, with_prometheus=with_prometheus)
    manager.loop()
    # honcho reports 130/143 when Ctrl-C or SIGTERM stopped the stack: a normal stop.
    return 0 if manager.returncode in (None, 130, 143) else manager.returncode


@contextmanager
def only_stack_of(data_dir: Path) -> Iterator[None]:
    """Hold the data folder's lock while the stack runs: a second `make run` (or `make
    migrate`) on the same folder stops at once, before it touches a server or a port.
    The kernel drops the lock when this process ends, however it ends."""
    lock = (data_dir / "make-run.lock").open("a+")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise StackError(
                f"{data_dir} is in use by make run (pid {holder}): stop it first, or give "
                "this one another STACK_DATA_DIR"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield
    finally:
        lock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack.run", description=__doc__)
    parser.add_argument("command", nargs="?", default="run", choices=["run", "migrate"])
    args = parser.parse_args(argv)
    config = StackConfig.from_env()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with only_stack_of(config.data_dir), databases(config) as db_env:
            migrate(config, db_env)
            if args.command == "migrate":
                return 0
            with redis(config) as redis_env, mail(config) as mail_env:
                keys = dev_keys(config, db_env)
                return serve(
                    config, {**db_env, **redis_env, **mail_env, **service_key(config), **keys}
                )
    except (StackError, PortInUseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
