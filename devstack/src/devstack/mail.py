"""A local SMTP sink: every message it receives becomes one `.eml` file in a folder.

`make run` starts one when `SMTP_URL` is not set, so the workers' notification mail can
be read under `.data/mail/`; tests start their own in-process and read it back with
`messages()`. Built on aiosmtpd, which serves SMTP from a thread with its own event loop.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import os
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devstack.servers import PortInUseError, port_is_free


class _FolderHandler:
    """aiosmtpd handler writing each message to `<UTC time>-<n>.eml`, so names sort by
    arrival (the counter orders messages received within the same microsecond)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        # Messages still to turn away with a temporary error ("try again later").
        self.refusals = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self.refusals > 0:
                self.refusals -= 1
                return "451 4.3.0 Mail server busy, try again later"
        content = envelope.original_content or b""
        # The envelope is what smtplib actually delivered to (Bcc included); keep it.
        recipients = ", ".join(envelope.rcpt_tos)
        trace = f"X-MailFrom: {envelope.mail_from}\r\nX-RcptTo: {recipients}\r\n".encode()
        with self._lock:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            name = f"{stamp}-{next(self._counter):06d}.eml"
        # Written aside and renamed, so a reader never sees half a message.
        partial = self.folder / f".{name}.partial"
        partial.write_bytes(trace + content)
        os.replace(partial, self.folder / name)
        return "250 Message accepted for delivery"


class MailSink:
    """An SMTP server on `host:port` keeping every message it receives under `folder`."""

    def __init__(self, folder: Path, port: int, host: str = "127.0.0.1") -> None:
        self.folder = Path(folder)
        self.port = port
        self.host = host
        self._handler = _FolderHandler(self.folder)
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> None:
        if not port_is_free(self.port, self.host):
            raise PortInUseError(
                f"port {self.port} is taken: stop what listens there or pick another port"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        controller = Controller(
            self._handler,
            hostname=self.host,
            port=self.port,
            enable_SMTPUTF8=True,
        )
        try:
            controller.start()
        except OSError as error:  # lost a race for the port since the check
            raise PortInUseError(f"cannot listen on {self.host}:{self.port}: {error}") from None
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse(self, count: int = 1) -> None:
        """Turn the next `count` messages away with a temporary error (451), as a busy
        server does; the sender is expected to try again."""
        self._handler.refusals = count

    def paths(self) -> list[Path]:
        """The stored messages' files, oldest first."""
        return sorted(self.folder.glob("*.eml"))

    def messages(self) -> list[EmailMessage]:
        """Every stored message, parsed, in arrival order."""
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in self.paths()
        ]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
