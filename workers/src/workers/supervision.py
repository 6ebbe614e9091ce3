"""What every process the pool forks (workers, the scheduler) does right after the fork.

A SIGKILLed pool cannot clean up after itself, so the children must not be able to outlive
it: each asks the kernel to SIGKILL it when its parent dies (`PR_SET_PDEATHSIG`), so that
no orphan keeps running jobs unsupervised or keeps the metrics port bound. And none keeps
the pool's metrics socket: a listening socket stays open as long as any process holds it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket

# From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1

_forking_pid = 0
_closed_in_child: list[socket.socket] = []


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent dies.

    Written with ctypes because the standard library has no binding for prctl(2) and the
    PyPI ones (python-prctl, prctl) are C extensions without wheels that need libcap headers
    to build; this is one call with two integer arguments.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


def close_in_children(sock: socket.socket) -> None:
    """Close `sock` in every process forked from now on (sockets outlive exec only if
    inheritable, but every fork inherits them)."""
    _closed_in_child.append(sock)


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _after_fork_in_child() -> None:
    set_parent_death_signal()
    # The parent may have died between the fork and the prctl, before the signal was armed.
    if os.getppid() != _forking_pid:
        os._exit(1)
    for sock in _closed_in_child:
        sock.close()


def supervise_forks() -> None:
    """Apply the rules above to every `os.fork()` of this process and of its children
    (multiprocessing's fork start method, which RQ's pool and scheduler use, calls it)."""
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
