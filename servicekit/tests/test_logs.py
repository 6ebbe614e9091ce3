"""The services' log lines: one JSON object each, without httpx's line per request."""

from __future__ import annotations

import json
import subprocess
import sys

# In a process of its own: configure_logging takes over the root logger.
EMIT = """
import logging
from servicekit.logs import configure_logging

configure_logging("books")
logging.getLogger("httpx").info('HTTP Request: GET http://orders/v1/orders/7 "HTTP/1.1 200 OK"')
logging.getLogger("httpx").warning("the server closed the connection")
logging.getLogger("books.catalog").info("book %s created", 7)
"""


def test_lines_are_json_and_httpx_requests_are_left_to_the_access_logs() -> None:
    output = subprocess.run(
        [sys.executable, "-c", EMIT], capture_output=True, text=True, check=True
    ).stdout

    lines = [json.loads(line) for line in output.splitlines()]
    assert [(line["logger"], line["level"], line["message"]) for line in lines] == [
        ("httpx", "WARNING", "the server closed the connection"),
        ("books.catalog", "INFO", "book 7 created"),
    ]
    assert {line["service"] for line in lines} == {"books"}
    assert all(line["request_id"] is None for line in lines)
