"""Where the CPU went while a section ran: every process of this machine, grouped by what
it runs, in ms per request, job or order.

On a machine where the stack shares the cores with its database, Redis and the load, rates
and latencies move with whatever else runs; CPU per operation moves much less (a virtual
machine still drifted 20% in ten minutes here: compare with a process whose code did not
change), and it says which process to make cheaper and how many operations the cores can
carry at most. The figures come from psutil: each process's user and system time, with that
of its children it reaped (so worker processes a section forks and waits for count too), and
the machine's busy time. Only this machine's processes are seen: a stack elsewhere shows as
nothing but the client.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

# The bench's own process: the load it sends and its checks, not the stack's work.
CLIENT = "this bench (client)"
# Worker processes the bench forked and waited for (the workers section's setups).
CLIENT_CHILDREN = "this bench's worker processes"
# What sends the load: left out of the stack's CPU.
LOAD_GENERATORS = frozenset({CLIENT, "wrk"})
# The command line of a process that multiprocessing spawned (its workers, its resource
# tracker) starts with this.
SPAWNED = "from multiprocessing."

Info = dict[str, object]


def _group(info: Info, others: dict[object, Info] | None = None) -> str:
    """`books`, `orders.relay`, `workers.worker` for `python -m <module>`; `postgres` for
    every PostgreSQL process (server, backends, background); else the process name. A
    process that multiprocessing spawned (an API's processes under `WEB_CONCURRENCY`) is
    its parent's, found by pid among `others`."""
    cmdline = info.get("cmdline") or []
    assert isinstance(cmdline, list)
    name = str(info.get("name") or "?")
    parent = (others or {}).get(info.get("ppid"))
    if parent is not None and any(str(argument).startswith(SPAWNED) for argument in cmdline):
        return _group(parent, others)
    if "-m" in cmdline[:-1]:
        return str(cmdline[cmdline.index("-m") + 1])
    if name == "postgres" or (cmdline and str(cmdline[0]).startswith("postgres:")):
        return "postgres"
    return name


def _snapshot() -> dict[tuple[int, float], tuple[str, float, float]]:
    """Per process (pid, start time): its group, own CPU seconds, reaped children's."""
    attributes = ["pid", "ppid", "name", "cmdline", "cpu_times", "create_time"]
    infos = {process.pid: process.info for process in psutil.process_iter(attributes)}
    processes = {}
    for info in infos.values():
        times = info.get("cpu_times")
        if times is None:  # gone, or not ours to read
            continue
        processes[info["pid"], info["create_time"]] = (
            _group(info, infos),
            times.user + times.system,
            times.children_user + times.children_system,
        )
    return processes


def _machine_busy() -> float:
    times = psutil.cpu_times()
    idle: float = times.idle + getattr(times, "iowait", 0.0)
    total: float = sum(times)
    return total - idle


@dataclass
class CpuUse:
    """CPU seconds spent during `seconds`, by group, and by the whole machine."""

    seconds: float = 0.0
    machine_busy_s: float = 0.0
    by_group: dict[str, float] = field(default_factory=dict)
    cores: int = field(default_factory=lambda: psutil.cpu_count() or 1)

    @property
    def stack_s(self) -> float:
        """Everything but the load generators: the stack, its database, Redis, the rest."""
        return sum(s for group, s in self.by_group.items() if group not in LOAD_GENERATORS)

    def ms_per(self, operations: int) -> float | None:
        """The stack's CPU ms per operation; None when nothing was measured."""
        if operations <= 0 or self.seconds <= 0:
            return None
        return 1000 * self.stack_s / operations

    def notes(self, operations: int, what: str) -> list[str]:
        """Two lines: CPU per operation by group, and the rate the cores could carry."""
        if operations <= 0 or self.seconds <= 0:
            return []
        share = 100 * self.machine_busy_s / (self.cores * self.seconds)
        # Groups under 1% of the total (kernel threads, agents) go together as "other".
        total = sum(self.by_group.values())
        shown: dict[str, float] = defaultdict(float)
        for group, s in self.by_group.items():
            shown[group if s >= total / 100 else "other"] += s
        groups = ", ".join(
            f"{group} {1000 * s / operations:.2f}"
            for group, s in sorted(shown.items(), key=lambda item: -item[1])
        )
        lines = [
            f"CPU ms per {what} (psutil, this machine; {self.machine_busy_s:.1f} s busy of "
            f"{self.cores} cores x {self.seconds:.1f} s, {share:.0f}%): {groups}"
        ]
        per_operation = self.ms_per(operations)
        if per_operation:
            lines.append(
                f"without the load generator: {per_operation:.2f} ms per {what}, so "
                f"{self.cores} cores carry at most {1000 * self.cores / per_operation:,.0f} "
                f"{what}s/s"
            )
        return lines


@contextmanager
def cpu_meter() -> Iterator[CpuUse]:
    """`with cpu_meter() as use:` ... after the block, `use` holds what the block cost."""
    use = CpuUse()
    before = _snapshot()
    busy = _machine_busy()
    started = time.perf_counter()
    yield use
    use.seconds = time.perf_counter() - started
    use.machine_busy_s = _machine_busy() - busy
    me = psutil.Process(os.getpid())
    mine = (me.pid, me.create_time())
    by_group: defaultdict[str, float] = defaultdict(float)
    for key, (group, own, children) in _snapshot().items():
        _, own_before, children_before = before.get(key, (group, 0.0, 0.0))
        if key == mine:
            by_group[CLIENT] += own - own_before
            by_group[CLIENT_CHILDREN] += children - children_before
        else:
            by_group[group] += own - own_before + children - children_before
    use.by_group = {group: s for group, s in by_group.items() if s > 0}
