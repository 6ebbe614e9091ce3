"""How each API's `python -m <service>` serves it (the images' command).

An API runs in one uvicorn process per core it may run on, or in as many as
`WEB_CONCURRENCY` says: each process runs the whole app (its own pools) on the one
listening socket, and uvicorn restarts a process that dies. One process cannot use more
than one core (on the README's 2-core machine, a second process took books' GET by id from
about 970 to 1,770 requests/s). A container whose CPU is limited by a quota sees every
core of its host, so the Kubernetes pods, limited to one core, set `WEB_CONCURRENCY=1`
and scale by replicas. The metrics stay the service's, not one process's: with more than
one process, every process writes its samples to files in a directory of its own
(prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`), and `/metrics`,
whichever process answers, sums them.

Each of several processes ends with the process that started them: uvicorn's processes
outlive a SIGKILLed parent and keep serving its port, where a restarted service could
not bind.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import tempfile
from collections.abc import Mapping
from typing import Any

CONCURRENCY_ENV = "WEB_CONCURRENCY"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# What a process builds its app with; the pid that each of several ends with.
FACTORY_ENV = "SERVICEKIT_APP_FACTORY"
PARENT_ENV = "SERVICEKIT_PARENT_PID"
PR_SET_PDEATHSIG = 1


def web_concurrency(environ: Mapping[str, str]) -> int:
    """The processes `WEB_CONCURRENCY` asks for, one per core this process may run on when
    it is unset; a bad value stops startup."""
    value = environ.get(CONCURRENCY_ENV, "").strip() or str(len(os.sched_getaffinity(0)))
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{CONCURRENCY_ENV} must be a whole number of processes, 1 or more")
    return int(value)


def serve(factory: str, *, host: str, port: int) -> None:
    """Run the app that `factory` ("module:function") builds under uvicorn until stopped."""
    # Imported here: servicekit is also used by processes that serve no HTTP.
    import uvicorn

    processes = web_concurrency(os.environ)
    os.environ[FACTORY_ENV] = factory
    if processes == 1:
        uvicorn.run(
            f"{__name__}:app_of_this_process",
            factory=True,
            host=host,
            port=port,
            server_header=False,
        )
        return
    # Set before uvicorn spawns the processes, which import prometheus_client afresh; a
    # new directory each start, so no sample of an earlier run is summed in.
    with tempfile.TemporaryDirectory(prefix="metrics-") as samples:
        os.environ[MULTIPROCESS_ENV] = samples
        os.environ[PARENT_ENV] = str(os.getpid())
        uvicorn.run(
            f"{__name__}:app_of_one_process",
            factory=True,
            host=host,
            port=port,
            server_header=False,
            workers=processes,
        )


def app_of_this_process() -> Any:
    """The app that `SERVICEKIT_APP_FACTORY` builds, with every object alive by then frozen
    (`gc.freeze`): the modules, routes, schemas and pools live as long as the process, and
    each full collection walked them all again. In a books process under load that took up
    to 124 ms per full collection (2.2 s in a minute) and set the p99 of GET by id at 256
    connections near 100 ms; frozen, 66 ms at most (0.3 s) and a p99 of 8-36 ms. Built by
    uvicorn (a factory, as it calls it), so that its logging setup comes first and ours
    after it."""
    from uvicorn.importer import import_from_string

    app = import_from_string(os.environ[FACTORY_ENV])()
    gc.freeze()
    return app


def app_of_one_process() -> Any:
    """The app of one of several processes, which ends with their parent: the kernel
    sends it SIGTERM (uvicorn's graceful stop) when the parent dies, SIGKILL included."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != int(os.environ[PARENT_ENV]):  # the parent died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)
    return app_of_this_process()
