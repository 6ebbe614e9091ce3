"""`python -m devstack.respawn NAME -- COMMAND...`: run COMMAND and start it again whenever it
dies, until this process is told to stop; `make run` starts each of its processes so.

Written by hand, on purpose small: honcho, which merges the processes' output under their
names and stops the stack on Ctrl-C, has no restart and ends every process when one exits;
the supervisors that restart (supervisord, circus) would replace that merged output with
log files and a daemon with its own configuration. Under honcho this process shares its
process group with COMMAND, and honcho signals the group: COMMAND gets the SIGTERM (or the
SIGKILL after honcho's grace period) itself, and this process only stops restarting and
waits for it. COMMAND dies with this process (parent-death signal), so nothing outlives it.

Restarts back off: 1 s after the first death, doubling up to 30 s while COMMAND keeps dying
within 30 s of its start; a run that lasted longer starts the count again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from workers.supervision import set_parent_death_signal

BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 30.0
# A run at least this long was not a crash loop: the next death waits BACKOFF_INITIAL_S.
STABLE_AFTER_S = 30.0


def describe(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


def respawn(name: str, command: Sequence[str]) -> int:
    """Run `command` until SIGTERM/SIGINT; its last exit code (128 + signal if killed)."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    backoff = BACKOFF_INITIAL_S
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command, preexec_fn=set_parent_death_signal)
        returncode = child.wait()
        if stopping.is_set():
            return 128 - returncode if returncode < 0 else returncode
        if time.monotonic() - started >= STABLE_AFTER_S:
            backoff = BACKOFF_INITIAL_S
        print(f"{name} {describe(returncode)}; restarting in {backoff:.0f} s", flush=True)
        if stopping.wait(backoff):
            return 0
        backoff = min(backoff * 2, BACKOFF_MAX_S)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m devstack.respawn NAME -- COMMAND...", file=sys.stderr)
        return 2
    return respawn(args[0], args[2:])


if __name__ == "__main__":
    sys.exit(main())
