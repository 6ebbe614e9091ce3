"""`make run` relays each process's output a burst at a time, whole lines only."""

from __future__ import annotations

import io
import subprocess
import sys

from honcho.manager import Manager
from honcho.printer import Printer

from devstack.output import Bursts, burst_process


def child_printing(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)


def messages_of(child: subprocess.Popen[bytes]) -> list[bytes]:
    assert child.stdout is not None
    output = Bursts(child.stdout)
    messages = list(iter(output.readline, b""))
    output.close()
    assert child.wait() == 0
    return messages


def test_lines_printed_together_are_relayed_as_one_message() -> None:
    code = "import os\nfor i in range(50): os.write(1, b'line %d\\n' % i)"
    messages = messages_of(child_printing(code))
    assert b"".join(messages) == b"".join(b"line %d\n" % i for i in range(50))
    # honcho alone sends one message per line: 50.
    assert len(messages) <= 3


def test_a_line_written_in_pieces_is_relayed_whole() -> None:
    code = "import os, time\nos.write(1, b'ha')\ntime.sleep(0.1)\nos.write(1, b'lf\\nnext\\n')"
    assert messages_of(child_printing(code)) == [b"half\nnext\n"]


def test_what_follows_the_last_newline_is_relayed_at_the_end() -> None:
    code = "import os\nos.write(1, b'whole\\n')\nimport time\ntime.sleep(0.1)\nos.write(1, b'tail')"
    assert messages_of(child_printing(code)) == [b"whole\n", b"tail"]


def test_honcho_prints_each_line_of_a_burst_with_its_process_name() -> None:
    printed = io.StringIO()
    manager = Manager(printer=Printer(printed))
    manager._process_ctor = burst_process
    manager.add_process("books", f"{sys.executable} -c \"print('one'); print('two')\"")
    manager.loop()
    lines = [line.split(" ", 1)[1] for line in printed.getvalue().splitlines()]
    assert "books  | one" in lines
    assert "books  | two" in lines
    assert manager.returncode == 0
