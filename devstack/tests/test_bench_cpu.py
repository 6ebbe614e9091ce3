"""The bench's CPU figures: every process's CPU while a section ran, per operation."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from devstack.bench import report
from devstack.bench.cpu import CLIENT, CLIENT_CHILDREN, CpuUse, _group, cpu_meter
from devstack.bench.load import Summary

SPIN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass"
# psutil reads CPU times from /proc in clock ticks: a difference of two readings may come
# out up to one tick short of the CPU spent between them, and a float subtraction's
# rounding below that (seen: 0.29999999999999893 for at least 0.3 s).
SLACK_S = 1 / os.sysconf("SC_CLK_TCK") + 1e-9


def spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@pytest.mark.parametrize(
    ("cmdline", "name", "group"),
    [
        (["/repo/.venv/bin/python", "-m", "books"], "python", "books"),
        (["/repo/.venv/bin/python", "-m", "workers.worker"], "python", "workers.worker"),
        (["postgres: 15/main: postgres books 127.0.0.1(5) idle"], "postgres", "postgres"),
        (["/usr/lib/postgresql/15/bin/postgres", "-D", "/data"], "postgres", "postgres"),
        (["redis-server 127.0.0.1:6379"], "redis-server", "redis-server"),
        ([], "kworker/0:1", "kworker/0:1"),
        (["python", "-m"], "python", "python"),
    ],
)
def test_processes_are_grouped_by_what_they_run(cmdline: list[str], name: str, group: str) -> None:
    assert _group({"cmdline": cmdline, "name": name}) == group


def test_a_spawned_process_is_counted_as_its_parents() -> None:
    """uvicorn's processes under WEB_CONCURRENCY run `python -c "from multiprocessing.spawn
    import spawn_main; ..."`: they are the service's."""
    books = {"pid": 10, "ppid": 1, "cmdline": ["python", "-m", "books"], "name": "python"}
    spawned = {
        "pid": 11,
        "ppid": 10,
        "cmdline": [
            "python",
            "-B",
            "-c",
            "from multiprocessing.spawn import spawn_main; spawn_main()",
        ],
        "name": "python",
    }
    others: dict[object, dict[str, object]] = {10: books, 11: spawned}

    assert _group(spawned, others) == "books"
    assert _group(spawned) == "python"


def test_the_client_and_the_workers_it_forks_are_counted_apart() -> None:
    with cpu_meter() as use:
        subprocess.run([sys.executable, "-c", SPIN.format(seconds=0.4)], check=True)
        spin(0.3)

    assert use.by_group[CLIENT_CHILDREN] >= 0.4 - SLACK_S
    assert use.by_group[CLIENT] >= 0.3 - SLACK_S
    # The bench's own process sends the load: the stack's cost is everything else.
    assert use.stack_s == pytest.approx(sum(use.by_group.values()) - use.by_group[CLIENT])
    assert use.ms_per(100) == pytest.approx(1000 * use.stack_s / 100)
    assert use.machine_busy_s >= 0.7 - 0.05
    assert use.seconds >= 0.7


def test_a_process_running_through_the_section_counts_only_what_it_spent_inside() -> None:
    started = subprocess.Popen(
        [sys.executable, "-c", f"import sys\n{SPIN.format(seconds=0.4)}\nsys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)  # its first spin is over before the section starts
        with cpu_meter() as use:
            time.sleep(0.3)
        idle_inside = sum(s for group, s in use.by_group.items() if "python" in group)
    finally:
        assert started.stdin is not None
        started.stdin.close()
        started.wait(timeout=10)
    assert idle_inside < 0.2


def test_the_notes_give_cpu_per_operation_by_group_and_what_the_cores_carry() -> None:
    use = CpuUse(
        seconds=10.0,
        machine_busy_s=15.0,
        by_group={"orders": 2.0, "books": 1.0, CLIENT: 5.0, "wrk": 1.0, "kdamond.0": 0.01},
        cores=2,
    )

    assert use.notes(100, "order") == [
        "CPU ms per order (psutil, this machine; 15.0 s busy of 2 cores x 10.0 s, 75%): "
        "this bench (client) 50.00, orders 20.00, books 10.00, wrk 10.00, other 0.10",
        "without the load generator: 30.10 ms per order, so 2 cores carry at most 66 orders/s",
    ]
    assert use.notes(0, "order") == []
    assert CpuUse().ms_per(10) is None


def test_the_table_shows_cpu_per_request_when_a_row_has_it() -> None:
    rows = [
        Summary("GET /v1/books/{id}", 1000, 0, 1.0, 1.0, 2.0, 3.0, cpu_ms=0.874),
        Summary("raw psycopg", 1000, 0, 1.0, 1.0, 2.0, 3.0),
    ]

    table = report.render([report.Report("books", heading="books:", summaries=rows)])

    header, api, raw = table.splitlines()[1:4]
    assert header.split()[-2:] == ["CPU", "ms"]
    assert api.split()[-1] == "0.87"
    assert raw.split()[-1] == "-"
    assert "CPU ms" not in report.render(
        [report.Report("books", heading="books:", summaries=rows[1:])]
    )
