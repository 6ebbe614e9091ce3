"""`make run`'s output, relayed a burst at a time.

honcho relays each line a process prints as one message: a relay process wakes up to
read it, pickles it onto a `multiprocessing` queue, and the printer wakes up to print it.
An API prints an access-log line per request, so under load that was two wake-ups per
request: 0.18 ms of the stack's CPU per `GET /v1/books/{id}`, a quarter of what the API
itself spent (`make bench`). Here a message carries every whole line a process printed
within `LINGER_S` of the first, so a busy API's lines cost a wake-up per burst.

honcho has no option for this; its `Process` takes the class that starts the command
from `_child_ctor`, and the `Manager` the class of its processes from `_process_ctor`.
"""

from __future__ import annotations

import os
import select
import time
from typing import IO, Any

import honcho.process

READ_BYTES = 64 * 1024
# Too short to notice on a terminal; long enough to gather a busy API's lines.
LINGER_S = 0.01


class Bursts:
    """The child's output pipe, whose `readline()` returns every whole line that arrived
    within `LINGER_S` of the first (at least one line), and at the end what is left."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.pipe = pipe
        self.partial = b""

    def readline(self) -> bytes:
        while True:
            select.select([self.pipe], [], [])
            time.sleep(LINGER_S)
            chunk = os.read(self.pipe.fileno(), READ_BYTES)
            if not chunk:
                rest, self.partial = self.partial, b""
                return rest
            data = self.partial + chunk
            end = data.rfind(b"\n") + 1
            self.partial = data[end:]
            if end:
                return data[:end]

    def close(self) -> None:
        self.pipe.close()


def burst_process(cmd: str, **kwargs: Any) -> Any:
    """A honcho `Process` whose output is relayed a burst at a time."""
    process = honcho.process.Process(cmd, **kwargs)
    process._child_ctor = _start_with_bursts
    return process


def _start_with_bursts(cmd: str, **kwargs: Any) -> Any:
    child = honcho.process.Popen(cmd, **kwargs)
    child.stdout = Bursts(child.stdout)
    return child
