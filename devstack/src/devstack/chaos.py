"""`make chaos`: orders and borrows flow while the relays and workers are SIGKILLed.

What an outside reviewer would run against the saga: a stack of its own (its own PostgreSQL
and Valkey, never the machine's; books and orders; each relay and the worker pool as a
process of its own), orders placed at a steady rate with borrows, returns and cancellations
among them, and every 3 to 8 s a SIGKILL of an outbox relay, the worker pool's main process
or one of its worker processes; whatever was killed is started again a second later, as a
supervisor would. Valkey is SIGKILLed once (a third of the way) and PostgreSQL restarted
once (two thirds). Then the stack is given `--settle` seconds, and the run counts what must
be zero: orders and borrows still pending, stock releases of cancelled orders no job
reported done, jobs lost (queued or started, in no list or registry), confirmation mails
never sent or sent twice, restarts that failed, stock not conserved to the unit, and what
the integrity check (`make check-integrity`) finds. Exit status 1 if any is not zero.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from rq import Queue

import workers.sweep as sweep
from devstack import integrity
from devstack.mail import MailSink
from devstack.run import REPO_ROOT, StackConfig, migrate
from devstack.servers import EmbeddedPostgres, EmbeddedValkey, free_port
from devstack.services import ManagedProcess, ServiceProcess, ServiceStartError
from servicekit.api_keys import Role, bearer, new_token, register_key
from workers.config import QUEUES

BOOKS_WITH_STOCK = 40
# An order takes 3 copies on average (1-3 lines of 1-2): each book is stocked with 80 % of
# what the run's orders would take of it, so some are refused for stock near the end.
UNITS_PER_ORDER = 3
STOCKED_SHARE = 0.8
BOOKS_TO_LEND = 10
COPIES_EACH = 3
MEMBERS = 40


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (the pool's workers and scheduler)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@dataclass
class Supervised:
    """A process of the stack that the run kills and starts again."""

    name: str
    command: list[str]
    ready_url: str
    env: dict[str, str]
    log_dir: Path
    process: ManagedProcess | None = None
    starts: int = 0
    failed_starts: int = 0
    start_seconds: list[float] = field(default_factory=list)

    def start(self) -> None:
        """Start it; a start that fails (the issue's `Address already in use`) counts, and
        is tried again a second later."""
        while True:
            self.starts += 1
            process = ManagedProcess(
                self.command,
                self.ready_url,
                env=self.env,
                log_path=self.log_dir / f"{self.name}-{self.starts}.log",
                cwd=REPO_ROOT,
                startup_timeout_s=30,
            )
            began = time.monotonic()
            try:
                process.start()
            except ServiceStartError:
                self.failed_starts += 1
                say(f"{self.name} failed to start; again in 1 s")
                time.sleep(1)
                continue
            self.start_seconds.append(time.monotonic() - began)
            self.process = process
            return

    def kill(self) -> None:
        assert self.process is not None
        assert self.process.process is not None
        self.process.process.send_signal(signal.SIGKILL)
        self.process.process.wait()
        self.process.stop()  # closes its log

    @property
    def pid(self) -> int:
        assert self.process is not None
        assert self.process.pid is not None
        return self.process.pid

    def logs(self) -> str:
        return "".join(
            path.read_text(errors="replace") for path in self.log_dir.glob(f"{self.name}-*.log")
        )


@dataclass
class Load:
    """Customers and members: orders at a steady rate, a borrow or a return among them."""

    orders_url: str
    admin_key: str
    book_ids: list[int]
    lendable_ids: list[int]
    member_ids: list[int]
    chance: random.Random
    placed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    borrowed: list[int] = field(default_factory=list)
    returned: int = 0
    refused: Counter[int] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.orders_url, timeout=10, headers=bearer(self.admin_key)
        )

    def send(
        self, method: str, path: str, body: Any = None, *, deadline_s: float = 60
    ) -> httpx.Response | None:
        """The request, retried with its Idempotency-Key while the stack is down (503, no
        answer), so each is done once; None if it never got through."""
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        give_up = time.monotonic() + deadline_s
        while time.monotonic() < give_up:
            try:
                response = self.http.request(method, path, json=body, headers=headers)
            except httpx.TransportError:
                time.sleep(0.5)
                continue
            if response.status_code < 500:
                return response
            time.sleep(0.5)
        return None

    def place_order(self) -> None:
        lines = self.chance.sample(self.book_ids, self.chance.randint(1, 3))
        body = {"items": [{"book_id": b, "quantity": self.chance.randint(1, 2)} for b in lines]}
        response = self.send("POST", "/v1/orders", body)
        if response is not None and response.status_code == 201:
            self.placed.append(response.json()["id"])
        elif response is not None:
            self.refused[response.status_code] += 1

    def cancel_order(self) -> None:
        """A customer cancels one of the orders placed so far (pending or confirmed): its
        stock must come back, whatever is killed meanwhile."""
        candidates = sorted(set(self.placed) - set(self.cancelled))
        if not candidates:
            return
        order_id = self.chance.choice(candidates)
        response = self.send("POST", f"/v1/orders/{order_id}/cancel")
        if response is not None and response.status_code == 200:
            self.cancelled.append(order_id)

    def borrow_or_return(self) -> None:
        if self.borrowed and self.chance.random() < 0.4:
            borrow_id = self.borrowed.pop(self.chance.randrange(len(self.borrowed)))
            response = self.send("POST", f"/v1/borrows/{borrow_id}/return")
            if response is not None and response.status_code == 200:
                self.returned += 1
            return
        body = {
            "member_id": self.chance.choice(self.member_ids),
            "book_id": self.chance.choice(self.lendable_ids),
        }
        response = self.send("POST", "/v1/borrows", body)
        if response is not None and response.status_code == 201:
            self.borrowed.append(response.json()["id"])

    def run(self, count: int, rate: float) -> None:
        began = time.monotonic()
        for number in range(count):
            time.sleep(max(0.0, began + number / rate - time.monotonic()))
            self.place_order()
            if number % 4 == 0:
                self.borrow_or_return()
            if number % 10 == 5:
                self.cancel_order()
            if number % 100 == 99:
                say(f"{number + 1}/{count} orders placed")


@dataclass
class Stack:
    folder: Path
    service_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The load writes as the admin (orders, borrows and returns, the catalog).
    admin_key: str = field(default_factory=new_token)

    def __post_init__(self) -> None:
        self.postgres = EmbeddedPostgres(self.folder / "postgres", free_port())
        self.valkey_port = free_port()
        self.valkey = self._valkey()
        self.mail = MailSink(self.folder / "mail", free_port())
        self.books = ServiceProcess("books.app:create_app", free_port())
        self.orders = ServiceProcess("orders.app:create_app", free_port())
        self.supervised: list[Supervised] = []

    def _valkey(self) -> EmbeddedValkey:
        return EmbeddedValkey(self.folder / "valkey", self.valkey_port, password=self.service_key)

    def url(self, database: str) -> str:
        return self.postgres.url.rsplit("/", 1)[0] + f"/{database}"

    def start(self) -> None:
        say("starting PostgreSQL and Valkey of the run's own ...")
        self.postgres.start()
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            for database in ("books_db", "orders_db"):
                conn.execute(f"CREATE DATABASE {database}")
        self.valkey.start()
        self.mail.start()
        env = {
            "BOOKS_DATABASE_URL": self.url("books_db"),
            "ORDERS_DATABASE_URL": self.url("orders_db"),
            "REDIS_URL": self.valkey.url,
            "SERVICE_KEY": self.service_key,
            "LOG_LEVEL": "INFO",
        }
        migrate(StackConfig.from_env(), env)
        register_key(
            [self.url("books_db"), self.url("orders_db")],
            token=self.admin_key,
            role=Role.ADMIN,
            name="chaos",
        )
        self.books.env = env
        self.books.start()
        self.orders.env = env | {"ORDERS_BOOKS_URL": self.books.url}
        self.orders.start()
        self.env = env | {
            "ORDERS_BOOKS_URL": self.books.url,
            "WORKERS_BOOKS_URL": self.books.url,
            "WORKERS_ORDERS_URL": self.orders.url,
            "SMTP_URL": self.mail.url,
        }
        for name, module, port_env in (
            ("books-relay", "books.relay", "BOOKS_RELAY_METRICS_PORT"),
            ("orders-relay", "orders.relay", "ORDERS_RELAY_METRICS_PORT"),
            ("workers", "workers.worker", "WORKERS_METRICS_PORT"),
        ):
            port = free_port()
            process = Supervised(
                name,
                [sys.executable, "-m", module],
                f"http://127.0.0.1:{port}/metrics",
                self.env | {port_env: str(port)},
                self.folder,
            )
            process.start()
            self.supervised.append(process)

    def process(self, name: str) -> Supervised:
        return next(process for process in self.supervised if process.name == name)

    def kill_valkey(self) -> None:
        say("Valkey: SIGKILL, started again in 2 s")
        assert self.valkey.pid is not None
        os.kill(self.valkey.pid, signal.SIGKILL)
        time.sleep(2)
        self.valkey = self._valkey()
        self.valkey.start()

    def restart_postgres(self) -> None:
        say("PostgreSQL: restart")
        self.postgres.stop()
        self.postgres.start()

    def stop(self) -> None:
        for process in self.supervised:
            if process.process is not None:
                process.process.stop()
        self.orders.stop()
        self.books.stop()
        self.valkey.stop()
        self.postgres.stop()
        self.mail.stop()


def make_catalog(
    stack: Stack, chance: random.Random, order_count: int
) -> tuple[list[int], list[int], list[int], dict[int, int]]:
    stock = int(order_count * UNITS_PER_ORDER / BOOKS_WITH_STOCK * STOCKED_SHARE)

    def created(response: httpx.Response) -> int:
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    admin = bearer(stack.admin_key)
    with httpx.Client(base_url=stack.books.url, timeout=10, headers=admin) as books:
        stocked = {
            created(
                books.post(
                    "/v1/books",
                    json={
                        "title": f"Chaos {n}",
                        "author": "Run",
                        "description": "A book of the chaos run.",
                        "price": f"{chance.randint(5, 40)}.99",
                        "stock": stock,
                    },
                )
            ): stock
            for n in range(BOOKS_WITH_STOCK)
        }
        lendable = [
            created(
                books.post(
                    "/v1/books",
                    json={
                        "title": f"Lend {n}",
                        "author": "Run",
                        "description": "A book of the chaos run.",
                        "price": "9.99",
                        "copies_total": COPIES_EACH,
                    },
                )
            )
            for n in range(BOOKS_TO_LEND)
        ]
    with httpx.Client(base_url=stack.orders.url, timeout=10, headers=admin) as orders:
        members = [
            created(
                orders.post(
                    "/v1/members", json={"name": f"Member {n}", "email": f"m{n}@chaos.test"}
                )
            )
            for n in range(MEMBERS)
        ]
    return list(stocked), lendable, members, stocked


def chaos(stack: Stack, chance: random.Random, stop: threading.Event, kills: Counter[str]) -> None:
    """Every 3 to 8 s, SIGKILL a relay, the pool or one worker; start it again a second later."""
    while not stop.wait(chance.uniform(3, 8)):
        victim = chance.choice(["books-relay", "orders-relay", "pool", "worker", "worker"])
        if victim == "worker":
            pool = stack.process("workers")
            if workers := children(pool.pid):
                os.kill(chance.choice(workers), signal.SIGKILL)
                kills["worker"] += 1
            continue
        process = stack.process("workers" if victim == "pool" else victim)
        process.kill()
        kills[victim] += 1
        time.sleep(1)
        process.start()


def pending(stack: Stack) -> tuple[int, int, int]:
    """Orders and borrows pending, and cancelled orders whose stock release no job has
    reported done."""
    with psycopg.connect(stack.url("orders_db")) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM orders WHERE status = 'pending'),"
            " (SELECT count(*) FROM borrows WHERE status = 'pending'),"
            " (SELECT count(*) FROM orders WHERE releasing_since IS NOT NULL)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def settle(stack: Stack, settle_s: float) -> tuple[int, int, int, float]:
    began = time.monotonic()
    while True:
        left = pending(stack)
        waited = time.monotonic() - began
        if left == (0, 0, 0) or waited > settle_s:
            return (*left, waited)
        time.sleep(2)


def lost_jobs(stack: Stack) -> list[str]:
    """Jobs whose hash says queued or started that nothing held twice, `LOST_GRACE_S`
    apart (as the pool's sweep judges them): one caught between two steps of a live
    worker is not lost."""
    connection = redis.Redis.from_url(stack.valkey.url)
    queues = [Queue(name, connection=connection) for name in QUEUES]
    first = {job_id for _, job_id in sweep.unheld_jobs(connection, queues)}
    if first:
        time.sleep(sweep.LOST_GRACE_S)
    return sorted(first & {job_id for _, job_id in sweep.unheld_jobs(connection, queues)})


def mails(workers: Supervised) -> Counter[str]:
    """Confirmation mails sent, by dedup key, from the workers' log records."""
    sent: Counter[str] = Counter()
    for line in workers.logs().splitlines():
        if '"email.order_confirmed"' in line:
            sent[json.loads(line)["idempotency_key"]] += 1
    return sent


def stock_drift(stack: Stack, stocked: dict[int, int]) -> list[str]:
    """Books whose stock is not the initial stock less what confirmed orders took."""
    with psycopg.connect(stack.url("orders_db")) as conn:
        taken: dict[int, int] = dict(
            conn.execute(
                "SELECT i.book_id, sum(i.quantity) FROM order_items i"
                " JOIN orders o ON o.id = i.order_id"
                " WHERE o.status = 'confirmed' GROUP BY i.book_id"
            ).fetchall()
        )
    with psycopg.connect(stack.url("books_db")) as conn:
        now: dict[int, int] = dict(
            conn.execute(
                "SELECT id, stock FROM books WHERE id = ANY(%s)", [list(stocked)]
            ).fetchall()
        )
    return [
        f"book {book}: {now[book]} in stock, expected {initial - int(taken.get(book, 0))}"
        for book, initial in stocked.items()
        if now[book] != initial - int(taken.get(book, 0))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=3.5, help="orders per second")
    parser.add_argument("--settle", type=float, default=120, help="seconds given to settle")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    # Not for secrets: the seed replays a run's choices.
    seed = args.seed if args.seed is not None else random.randrange(10**6)  # noqa: S311
    chance = random.Random(seed)  # noqa: S311
    folder = Path(tempfile.mkdtemp(prefix="bookstore-chaos-"))
    say(f"chaos run (seed {seed}); logs in {folder}")
    stack = Stack(folder)
    try:
        stack.start()
        book_ids, lendable, members, stocked = make_catalog(stack, chance, args.orders)
        load = Load(
            stack.orders.url,
            stack.admin_key,
            book_ids,
            lendable,
            members,
            random.Random(seed + 1),  # noqa: S311
        )
        kills: Counter[str] = Counter()
        stop = threading.Event()
        kill_chance = random.Random(seed + 2)  # noqa: S311
        killer = threading.Thread(target=chaos, args=(stack, kill_chance, stop, kills))
        faults: list[tuple[float, Callable[[], None]]] = [
            (args.orders / args.rate / 3, stack.kill_valkey),
            (args.orders / args.rate * 2 / 3, stack.restart_postgres),
        ]
        timers = [threading.Timer(at, fault) for at, fault in faults]
        killer.start()
        for timer in timers:
            timer.start()
        began = time.monotonic()
        load.run(args.orders, args.rate)
        load_s = time.monotonic() - began
        for timer in timers:
            timer.join()
        stop.set()
        killer.join()
        say(f"load done in {load_s:.0f} s; settling (at most {args.settle:.0f} s) ...")
        orders_left, borrows_left, releases_left, settled_s = settle(stack, args.settle)
        lost = lost_jobs(stack)
        workers = stack.process("workers")
        sent = mails(workers)
        with psycopg.connect(stack.url("orders_db")) as conn:
            confirmed = [
                row[0] for row in conn.execute("SELECT id FROM orders WHERE status = 'confirmed'")
            ]
            statuses: dict[str, int] = dict(
                conn.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall()
            )
        never_mailed = [order for order in confirmed if sent[f"order-confirmed:{order}"] == 0]
        mailed_twice = [key for key, count in sent.items() if count > 1]
        drift = stock_drift(stack, stocked)
        report = integrity.check(stack.url("books_db"), stack.url("orders_db"))
        failed_starts = sum(process.failed_starts for process in stack.supervised)
        pool_starts = sorted(workers.start_seconds)
        figures = {
            "orders placed (accepted) / cancelled": (len(load.placed), len(load.cancelled)),
            "orders by status": dict(sorted(statuses.items())),
            "orders refused (4xx)": dict(load.refused),
            "borrows accepted / returned": (len(load.borrowed) + load.returned, load.returned),
            "kills (SIGKILL)": dict(sorted(kills.items())),
            "Valkey kills / PostgreSQL restarts": "1 / 1",
            "settled after (s)": round(settled_s, 1),
            "pool (re)starts: median / slowest (s)": (
                round(pool_starts[len(pool_starts) // 2], 2),
                round(pool_starts[-1], 2),
            ),
            "library notices mailed": len(list((folder / "mail").glob("*"))),
        }
        zeros = {
            f"orders pending after {args.settle:.0f} s": orders_left,
            f"borrows pending after {args.settle:.0f} s": borrows_left,
            f"stock releases unreported after {args.settle:.0f} s": releases_left,
            "jobs lost (queued/started, held by nothing)": len(lost),
            "confirmation mails never sent": len(never_mailed),
            "confirmation mails sent twice": len(mailed_twice),
            "failed restarts": failed_starts,
            "books whose stock drifted": len(drift),
            "integrity problems": sum(len(where) for where in report.problems.values()),
        }
        for name, value in figures.items():
            print(f"{name:<45} {value}")
        for name, value in zeros.items():
            print(f"{name:<45} {value}{'' if value == 0 else '   <-- must be 0'}")
        for line in report.lines() + drift[:10] + [f"lost: {job_id}" for job_id in lost[:10]]:
            print(f"  {line}")
        return 0 if not any(zeros.values()) else 1
    finally:
        stack.stop()
        say(f"stack stopped; logs kept in {folder}")


if __name__ == "__main__":
    sys.exit(main())
