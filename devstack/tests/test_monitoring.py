"""monitoring/: the Prometheus configuration, the alert rules and the Grafana dashboards.

promtool checks the configuration and runs the rules' unit tests; every metric that an
expression names must be one the code declares; and against the real processes (both
APIs, both outbox relays and the workers, scraped by a real Prometheus) every query of
every dashboard and alert rule must return data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import yaml
from prometheus_client import REGISTRY, Metric
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from devstack.mail import MailSink
from devstack.monitoring import MONITORING_DIR, LocalPrometheus, job_names, prometheus_binary
from devstack.pytest_plugin import create_database, drop_database
from devstack.servers import EmbeddedValkey, free_port
from devstack.services import ManagedProcess, ServiceProcess
from servicekit.api_keys import Role, bearer, new_token, register_key
from servicekit.service_key import SERVICE_KEY_HEADER

REPO_ROOT = MONITORING_DIR.parent
RULES_DIR = MONITORING_DIR / "rules"
RULE_TESTS_DIR = MONITORING_DIR / "tests"
DASHBOARDS_DIR = MONITORING_DIR / "grafana" / "dashboards"
PROVISIONING_DIR = MONITORING_DIR / "grafana" / "provisioning"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed: `apt-get install prometheus` (Debian) provides it",
)
needs_prometheus = pytest.mark.skipif(
    prometheus_binary() is None,
    reason="prometheus is not installed: `apt-get install prometheus` (Debian) provides it",
)
# Grafana's interval variables, replaced by what Grafana would send at a short range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# Series Prometheus adds to every scrape rather than any process exposing them.
SCRAPE_SERIES = frozenset({"up"})


# --- the expressions -------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    source: str
    expr: str

    def __str__(self) -> str:
        return f"{self.source}: {' '.join(self.expr.split())}"


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path, rule


def alerts() -> list[dict[str, Any]]:
    return [rule for _, rule in rules() if "alert" in rule]


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # the panels of a collapsed row


def queries() -> list[Query]:
    found = [
        Query(
            f"{path.relative_to(MONITORING_DIR)} {rule.get('alert') or rule['record']}",
            rule["expr"],
        )
        for path, rule in rules()
    ]
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                found.append(Query(f"{name} {panel['title']!r} {target['refId']}", target["expr"]))
    return found


_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
    | {"group_left", "group_right"}
)
_SET_OPERATOR = re.compile(r"\s(?:and|or|unless)\s")
_TRAILING_COMPARISON = re.compile(
    r"\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+]?[\d.]+(?:e[-+]?\d+)?\s*$"
)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (identifiers that are not functions,
    keywords, label names or durations)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        is_function = text[match.end() :].lstrip().startswith("(")
        if name.lower() not in _KEYWORDS and not is_function:
            names.add(name)
    return names


def operands(expr: str) -> list[str]:
    """An alert's expression as queries that return series whether or not it fires: split at
    its top-level `and`/`or`/`unless`, each side without its threshold comparison."""
    parts, depth, start = [], 0, 0
    masked = _STRINGS.sub(lambda m: "_" * len(m.group()), expr)
    for index, char in enumerate(masked):
        depth += (char in "([{") - (char in ")]}")
        if depth == 0 and index >= start and (match := _SET_OPERATOR.match(masked, index)):
            parts.append(expr[start:index])
            start = match.end()
    parts.append(expr[start:])
    return [_TRAILING_COMPARISON.sub("", part).strip() for part in parts]


def for_prometheus(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def evaluated_queries() -> list[Query]:
    """Every dashboard query as it is, every alert as the operands of its comparison."""
    alert_sources = {
        f"{path.relative_to(MONITORING_DIR)} {rule['alert']}"
        for path, rule in rules()
        if "alert" in rule
    }
    found: list[Query] = []
    for query in queries():
        parts = operands(query.expr) if query.source in alert_sources else [query.expr]
        found.extend(Query(query.source, for_prometheus(part)) for part in parts)
    return found


class TestExpressionParsing:
    def test_metric_names_skip_functions_labels_and_durations(self) -> None:
        expr = (
            'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{job="x", le=~"0.5"}'
            "[5m] offset 1h))) / on (job) group_left sum(b_total) without (instance) > bool 1e3"
        )
        assert metric_names(expr) == {"a_bucket", "b_total"}

    def test_operands_split_set_operators_and_drop_thresholds(self) -> None:
        expr = 'max by (queue) (depth) > 10\nand\nmax(rate(x{a="b or c"}[5m]) or vector(0)) == 2'
        assert operands(expr) == [
            "max by (queue) (depth)",
            'max(rate(x{a="b or c"}[5m]) or vector(0))',
        ]


# --- promtool ----------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=MONITORING_DIR,
    )


@needs_promtool
class TestPromtool:
    def test_configuration_is_valid_with_its_rules(self, tmp_path: Path) -> None:
        """The committed file, with its rules glob pointed at the repository instead of the
        container's mount, so promtool checks the rules it would load too."""
        config = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())
        config["rule_files"] = [str(RULES_DIR / "*.yml")]
        copy = tmp_path / "prometheus.yml"
        copy.write_text(yaml.safe_dump(config))
        result = promtool("check", "config", str(copy))
        assert result.returncode == 0, result.stdout + result.stderr
        for path in rule_files():
            assert path.name in result.stdout

    def test_rules_are_valid(self) -> None:
        result = promtool("check", "rules", *map(str, rule_files()))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_rule_unit_tests_pass(self) -> None:
        result = promtool("test", "rules", *map(str, sorted(RULE_TESTS_DIR.glob("*.yml"))))
        assert result.returncode == 0, result.stdout + result.stderr


class TestRules:
    def test_prometheus_loads_the_rules_compose_mounts(self) -> None:
        """prometheus.yml's rule glob is where docker-compose.yml mounts monitoring/rules."""
        compose = yaml.safe_load(COMPOSE_FILE.read_text())
        mounts = dict(
            volume.split(":")[:2] for volume in compose["services"]["prometheus"]["volumes"]
        )
        config = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())
        assert config["rule_files"] == [f"{mounts['./monitoring/rules']}/*.yml"]

    @pytest.mark.parametrize("alert", alerts(), ids=lambda alert: alert["alert"])
    def test_alert_has_severity_summary_and_description(self, alert: dict[str, Any]) -> None:
        assert alert["labels"]["severity"] in {"critical", "warning"}
        assert alert["annotations"]["summary"].strip()
        assert alert["annotations"]["description"].strip()

    @pytest.mark.parametrize("alert", alerts(), ids=lambda alert: alert["alert"])
    def test_alert_has_unit_tests_firing_and_not_firing(self, alert: dict[str, Any]) -> None:
        cases = [
            case
            for path in RULE_TESTS_DIR.glob("*.yml")
            for group in yaml.safe_load(path.read_text())["tests"]
            for case in group.get("alert_rule_test", [])
            if case["alertname"] == alert["alert"]
        ]
        assert any(case.get("exp_alerts") for case in cases), "no test where it fires"
        assert any(not case.get("exp_alerts") for case in cases), "no test where it stays quiet"


# --- Grafana -----------------------------------------------------------------------------


def provisioning(kind: str) -> dict[str, Any]:
    (path,) = (PROVISIONING_DIR / kind).glob("*.yml")
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


class TestGrafana:
    def test_dashboards_provider_reads_the_folder_compose_mounts(self) -> None:
        compose = yaml.safe_load(COMPOSE_FILE.read_text())
        mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
        (provider,) = provisioning("dashboards")["providers"]
        assert provider["options"]["path"] == mounts["./monitoring/grafana/dashboards"]
        assert mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"

    def test_every_panel_uses_the_provisioned_datasource(self) -> None:
        (datasource,) = [
            source
            for path in (PROVISIONING_DIR / "datasources").glob("*.yml")
            for source in yaml.safe_load(path.read_text())["datasources"]
            if source["type"] == "prometheus"
        ]
        expected = {"type": datasource["type"], "uid": datasource["uid"]}
        for name, dashboard in dashboards().items():
            for panel in panels(dashboard):
                for node in [panel, *panel.get("targets", [])]:
                    if "datasource" in node:
                        assert node["datasource"] == expected, f"{name} {panel['title']!r}"

    def test_dashboards_have_unique_uids_and_panel_ids(self) -> None:
        uids = [dashboard["uid"] for dashboard in dashboards().values()]
        assert len(uids) == len(set(uids)) == 4
        for name, dashboard in dashboards().items():
            ids = [panel["id"] for panel in panels(dashboard)]
            assert len(ids) == len(set(ids)), name

    def test_every_query_panel_has_a_query(self) -> None:
        for name, dashboard in dashboards().items():
            for panel in panels(dashboard):
                if panel["type"] != "row":
                    assert panel.get("targets"), f"{name} {panel['title']!r}"
                    assert all(target["expr"].strip() for target in panel["targets"])


# --- metric names against the code -------------------------------------------------------

_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def sample_names(family: Metric) -> set[str]:
    return {family.name + suffix for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",))}


async def _first_request(app: Any, path: str) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get(path)


@cache
def declared_metric_names(redis_url: str) -> frozenset[str]:
    """The sample names the code can expose, from its own registries: importing a module
    declares its metrics, the HTTP middleware of each app declares its own on the first
    request (one that fails validation, so no database is needed), and the workers'
    queue collector reads Redis."""
    import servicekit.relay  # noqa: F401 - declares the relay's metrics
    from books.app import create_app as create_books_app
    from orders.app import create_app as create_orders_app
    from workers.config import QUEUES
    from workers.metrics import QueueCollector

    # The apps set up the process's logging for production; the test run keeps its own.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        asyncio.run(_first_request(create_books_app(), "/v1/books?limit=0"))
        asyncio.run(_first_request(create_orders_app(), "/v1/orders?limit=0"))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    names = {name for family in REGISTRY.collect() for name in sample_names(family)}
    collector = QueueCollector(redis.Redis.from_url(redis_url), QUEUES)
    queue_families = list(collector.collect())
    assert {family.name for family in queue_families} != {"workers_redis_up"}, "Redis unreadable"
    names |= {name for family in queue_families for name in sample_names(family)}
    return frozenset(names)


class TestMetricNames:
    def test_every_expression_names_metrics_the_code_declares(self, redis_url: str) -> None:
        declared = declared_metric_names(redis_url) | SCRAPE_SERIES
        unknown = [
            f"{query}  ->  {sorted(metric_names(query.expr) - declared)}"
            for query in queries()
            if metric_names(query.expr) - declared
        ]
        assert not unknown, "metrics no code declares:\n" + "\n".join(unknown)

    def test_every_expression_names_a_metric(self) -> None:
        assert all(metric_names(query.expr) for query in queries())


# --- every query returns data from the real stack -----------------------------------------

SERVICE_KEY = secrets.token_urlsafe(16)
STARTUP_TIMEOUT_S = 30.0
DATA_TIMEOUT_S = 60.0


def background_process(
    module: str, metrics_port: int, env: Mapping[str, str], log_dir: Path
) -> ManagedProcess:
    """`python -m <module>`, ready when its /metrics answers; its own process group, so a
    stuck worker pool is stopped whole."""
    return ManagedProcess(
        [sys.executable, "-m", module],
        ready_url=f"http://127.0.0.1:{metrics_port}/metrics",
        env=env,
        log_path=log_dir / f"{module}.log",
        cwd=REPO_ROOT,
        own_session=True,
        startup_timeout_s=STARTUP_TIMEOUT_S,
    )


@dataclass(frozen=True)
class Stack:
    books: str
    orders: str
    orders_database_url: str
    redis_url: str
    mail: MailSink
    prometheus: LocalPrometheus
    admin_key: str

    def client(self, base_url: str) -> httpx.Client:
        """A client of books or orders with the admin key."""
        return httpx.Client(base_url=base_url, timeout=10, headers=bearer(self.admin_key))

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.prometheus.url}/api/v1/query", params={"query": expr}, timeout=10
        )
        body = response.json()
        assert response.status_code == 200, f"{expr}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def api(self, path: str) -> Any:
        response = httpx.get(f"{self.prometheus.url}/api/v1/{path}", timeout=10)
        response.raise_for_status()
        return response.json()["data"]


def migrate(service: str, database_env: str, url: str) -> None:
    alembic_ini = REPO_ROOT / service / "alembic.ini"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(alembic_ini), "upgrade", "head"],
        env={**os.environ, database_env: url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def stack(postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """books, orders, web, both relays and the workers as real processes on their own Valkey
    (the workers take every job of their queues, and mail notices to a local SMTP sink),
    scraped every second by Prometheus."""
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed: `apt-get install prometheus` (Debian)")
    workdir = tmp_path_factory.mktemp("monitoring")
    with ExitStack() as stack:
        valkey = stack.enter_context(EmbeddedValkey(workdir / "valkey", free_port(), persist=False))
        databases = {}
        for service, variable in (
            ("books", "BOOKS_DATABASE_URL"),
            ("orders", "ORDERS_DATABASE_URL"),
        ):
            url = create_database(postgres_server_url, f"monitoring_{service}")
            stack.callback(drop_database, postgres_server_url, url)
            migrate(service, variable, url)
            databases[variable] = url
        admin_key = new_token()
        register_key(list(databases.values()), token=admin_key, role=Role.ADMIN, name="monitoring")
        mail = stack.enter_context(MailSink(workdir / "mail", free_port()))
        ports = {job: free_port() for job in job_names() if job not in ("redis", "postgres")}
        books_url = f"http://127.0.0.1:{ports['books']}"
        orders_url = f"http://127.0.0.1:{ports['orders']}"
        env = {
            **databases,
            "SERVICE_KEY": SERVICE_KEY,
            "REDIS_URL": valkey.url,
            "ORDERS_BOOKS_URL": books_url,
            "BOOKS_RELAY_METRICS_PORT": str(ports["books-relay"]),
            "ORDERS_RELAY_METRICS_PORT": str(ports["orders-relay"]),
            "WORKERS_BOOKS_URL": books_url,
            "WORKERS_ORDERS_URL": orders_url,
            "WORKERS_METRICS_PORT": str(ports["workers"]),
            "WORKERS_PROCESSES": "1",
            "SMTP_URL": mail.url,
            # Configured, so covers reach the image check, but pointing at a closed port:
            # nothing leaves the machine.
            "CLOUDINARY_URL": "cloudinary://key:secret@monitoring-test",
            "CLOUDINARY_UPLOAD_PREFIX": f"http://127.0.0.1:{free_port()}",
        }
        site = {
            "WEB_BOOKS_URL": books_url,
            "WEB_ORDERS_URL": orders_url,
            "WEB_SECRET_KEY": "monitoring-test-secret-key-0123456789",
        }
        for factory, job, extra in (
            ("books.app:create_app", "books", {}),
            ("orders.app:create_app", "orders", {}),
            ("web.app:create_app", "web", site),
        ):
            stack.enter_context(ServiceProcess(factory, ports[job], {**env, **extra}))
        # Only the workers share counters between processes; in the others the variable
        # would switch prometheus_client to reading every process's files.
        multiprocess = {"PROMETHEUS_MULTIPROC_DIR": str(workdir / "workers-metrics")}
        (workdir / "workers-metrics").mkdir()
        for module, job, extra in (
            ("books.relay", "books-relay", {}),
            ("orders.relay", "orders-relay", {}),
            ("workers.worker", "workers", multiprocess),
        ):
            stack.enter_context(background_process(module, ports[job], {**env, **extra}, workdir))
        prometheus = stack.enter_context(
            LocalPrometheus(ports, workdir / "prometheus", free_port())
        )
        yield Stack(
            books_url,
            orders_url,
            databases["ORDERS_DATABASE_URL"],
            valkey.url,
            mail,
            prometheus,
            admin_key,
        )


def wait_for_status(client: httpx.Client, order_id: int, status: str) -> None:
    deadline = time.monotonic() + DATA_TIMEOUT_S
    while (current := client.get(f"/v1/orders/{order_id}").json()["status"]) != status:
        assert time.monotonic() < deadline, f"order {order_id} stayed {current}, not {status}"
        time.sleep(0.2)


def settled_status(client: httpx.Client, order_id: int) -> str:
    deadline = time.monotonic() + DATA_TIMEOUT_S
    while (current := client.get(f"/v1/orders/{order_id}").json()["status"]) == "pending":
        assert time.monotonic() < deadline, f"order {order_id} stayed pending"
        time.sleep(0.2)
    return str(current)


def race_for_the_last_copy(
    orders: httpx.Client, place: Callable[[int, int], httpx.Response], book_id: int
) -> list[str]:
    """Four orders for a book with one copy, sent at once: those that pass the stock
    pre-check together race in the reservation, which rejects the losers."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: place(book_id, 1), range(4)))
    accepted = [response.json()["id"] for response in responses if response.status_code == 201]
    return [settled_status(orders, order_id) for order_id in accepted]


def drive_traffic(stack: Stack) -> None:
    """A bit of everything the dashboards show: catalog reads and writes, a rejected
    cover, orders that are confirmed, cancelled, refused at placement and rejected by the
    reservation, and a job that is retried and then fails for good."""
    with (
        stack.client(stack.books) as books,
        stack.client(stack.orders) as orders,
    ):

        def create(title: str, stock: int) -> int:
            payload = {
                "title": title,
                "author": "A. Writer",
                "description": "Monitored.",
                "price": "12.50",
                "stock": stock,
            }
            response = books.post("/v1/books", json=payload)
            assert response.status_code == 201, response.text
            return int(response.json()["id"])

        plenty, scarce, doomed = create("Plenty", 100), create("Scarce", 1), create("Doomed", 0)
        assert books.get("/v1/books", params={"limit": 5}).status_code == 200
        assert books.get(f"/v1/books/{plenty}").status_code == 200
        assert books.get("/v1/books/999999999").status_code == 404
        assert (
            books.patch(f"/v1/books/{plenty}", json={"description": "Still monitored."}).status_code
            == 200
        )
        assert books.delete(f"/v1/books/{doomed}").status_code == 200
        cover = books.put(
            f"/v1/books/{plenty}/cover", files={"file": ("c.txt", b"not an image", "text/plain")}
        )
        assert cover.status_code == 415, cover.text

        def place(book_id: int, quantity: int) -> httpx.Response:
            return orders.post(
                "/v1/orders", json={"items": [{"book_id": book_id, "quantity": quantity}]}
            )

        confirmed = place(plenty, 2)
        assert confirmed.status_code == 201, confirmed.text
        assert place(scarce, 5).status_code == 409  # refused at once: not enough stock
        assert place(999999999, 1).status_code == 422
        # The pre-check usually lets several through; rarely the first is confirmed before
        # the others are checked, and they are all refused with 409: race again.
        rounds = (race_for_the_last_copy(orders, place, create(f"Last {n}", 1)) for n in range(5))
        assert any("rejected" in statuses for statuses in rounds), (
            "no order reached the saga's rejection"
        )
        assert orders.get("/v1/orders").status_code == 200
        wait_for_status(orders, confirmed.json()["id"], "confirmed")
        cancel = orders.post(f"/v1/orders/{confirmed.json()['id']}/cancel")
        assert cancel.status_code in (200, 201), cancel.text

    # What the books relay would enqueue for a replaced cover; the workers have no
    # Cloudinary account, so it fails, is retried once, and fails for good.
    queue = Queue(
        "maintenance", connection=redis.Redis.from_url(stack.redis_url), serializer=JSONSerializer
    )
    queue.enqueue(
        "workers.covers.delete_image", {"public_id": "monitoring/gone"}, retry=Retry(max=1)
    )


def wait_for_borrow(client: httpx.Client, borrow_id: int, status: str) -> None:
    deadline = time.monotonic() + DATA_TIMEOUT_S
    while (current := client.get(f"/v1/borrows/{borrow_id}").json()["status"]) != status:
        assert time.monotonic() < deadline, f"borrow {borrow_id} stayed {current}, not {status}"
        time.sleep(0.2)


def set_due_at(stack: Stack, borrow_id: int, due_at: str) -> None:
    """Move a loan's due date, as the days passing would (`due_at` is SQL)."""
    with psycopg.connect(stack.orders_database_url, autocommit=True) as conn:
        conn.execute(f"UPDATE borrows SET due_at = {due_at} WHERE id = %s", (borrow_id,))


def drive_lending(stack: Stack) -> None:
    """A member borrows three books (each loan activated by a worker), returns one late,
    is blocked for the fine owed, and pays it; the library sweep finds one loan overdue
    and mails its notice; then, the mail server gone, a notice for a loan due soon fails."""
    with (
        stack.client(stack.books) as books,
        stack.client(stack.orders) as orders,
    ):

        def sweep() -> None:
            response = orders.post(
                "/internal/v1/library/sweep", headers={SERVICE_KEY_HEADER: SERVICE_KEY}
            )
            assert response.status_code == 200, response.text

        member = orders.post(
            "/v1/members", json={"name": "Ada Lovelace", "email": "ada@example.org"}
        )
        assert member.status_code == 201, member.text
        borrow_ids = []
        for title in ("Lent and returned", "Lent and overdue", "Lent and due soon"):
            book = books.post(
                "/v1/books",
                json={
                    "title": title,
                    "author": "A. Writer",
                    "description": "Lent.",
                    "price": "9.90",
                    "stock": 0,
                    "copies_total": 2,
                },
            )
            assert book.status_code == 201, book.text
            borrow = orders.post(
                "/v1/borrows", json={"member_id": member.json()["id"], "book_id": book.json()["id"]}
            )
            assert borrow.status_code == 201, borrow.text
            borrow_ids.append(int(borrow.json()["id"]))
        for borrow_id in borrow_ids:
            wait_for_borrow(orders, borrow_id, "active")
        returned, overdue, due_soon = borrow_ids
        # Returned two days late: a fine in the member's ledger, which the desk is paid.
        set_due_at(stack, returned, "now() - interval '2 days'")
        response = orders.post(f"/v1/borrows/{returned}/return")
        assert response.status_code == 200, response.text
        # Owing more than the category allows blocks the next borrow.
        limit = orders.patch("/v1/member-categories/adult", json={"max_balance": "0.00"})
        assert limit.status_code == 200, limit.text
        blocked = orders.post(
            "/v1/borrows", json={"member_id": member.json()["id"], "book_id": book.json()["id"]}
        )
        assert blocked.status_code == 403, blocked.text
        payment = orders.post(
            f"/v1/members/{member.json()['id']}/payments",
            json={"amount": response.json()["late_fee"], "reason": "Paid at the desk"},
        )
        assert payment.status_code == 201, payment.text

        set_due_at(stack, overdue, "now() - interval '1 day'")
        sweep()
        deadline = time.monotonic() + DATA_TIMEOUT_S
        while not stack.mail.messages():
            assert time.monotonic() < deadline, "the overdue notice was not mailed"
            time.sleep(0.2)
        assert stack.mail.messages()[0]["X-Notice-Kind"] == "overdue_1"

        stack.mail.stop()
        set_due_at(stack, due_soon, "now() + interval '1 hour'")
        sweep()


def wait_for_data(stack: Stack, queries: list[Query]) -> list[Query]:
    """The queries still without series once every one has them or time is up."""
    remaining = list(queries)
    deadline = time.monotonic() + DATA_TIMEOUT_S
    while remaining and time.monotonic() < deadline:
        remaining = [query for query in remaining if not stack.query(query.expr)]
        time.sleep(1)
    return remaining


@dataclass(frozen=True)
class Observed:
    stack: Stack
    without_data: list[Query]


@pytest.fixture(scope="module")
def observed(stack: Stack) -> Observed:
    """The stack after the traffic, once every query has data or the time is up."""
    drive_traffic(stack)
    drive_lending(stack)
    return Observed(stack, wait_for_data(stack, evaluated_queries()))


@needs_prometheus
class TestEveryQueryReturnsData:
    def test_every_target_is_scraped(self, observed: Observed) -> None:
        """Every job of the local configuration, each healthy (discovery takes a few s)."""

        def healthy() -> dict[str, str]:
            targets = observed.stack.api("targets")["activeTargets"]
            return {target["labels"]["job"]: target["health"] for target in targets}

        expected = dict.fromkeys(observed.stack.prometheus.targets, "up")
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while (health := healthy()) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        assert health == expected

    def test_every_query_returns_series(self, observed: Observed) -> None:
        empty = observed.without_data
        assert not empty, "queries without data:\n" + "\n".join(map(str, empty))

    def test_every_metric_named_is_scraped(self, observed: Observed) -> None:
        scraped = set(observed.stack.api("label/__name__/values"))
        missing = [
            f"{query}  ->  {sorted(metric_names(query.expr) - scraped)}"
            for query in queries()
            if metric_names(query.expr) - scraped
        ]
        assert not missing, "metrics no process exposes:\n" + "\n".join(missing)

    def test_rules_load_and_evaluate_without_errors(self, observed: Observed) -> None:
        groups = observed.stack.api("rules")["groups"]
        loaded = {rule["name"] for group in groups for rule in group["rules"]}
        assert loaded == {alert["alert"] for alert in alerts()}
        broken = [
            f"{rule['name']}: {rule.get('lastError')}"
            for group in groups
            for rule in group["rules"]
            if rule["health"] == "err"
        ]
        assert not broken
