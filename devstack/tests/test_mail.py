"""The local SMTP sink of `make run` (devstack.mail), driven with smtplib."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devstack.mail import MailSink
from devstack.servers import PortInUseError, free_port


def make_message(subject: str, *, to: str = "ada@example.org") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "library@example.org"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(f"Body of {subject} — déjà lu.")
    return message


def send(url: str, message: EmailMessage) -> None:
    """Send the way the workers do: smtplib to the host and port of an smtp:// URL."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with smtplib.SMTP(parts.hostname, parts.port, timeout=10) as client:
        client.send_message(message)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(tmp_path / "mail", free_port()) as sink:
        yield sink


class TestMailSink:
    def test_url_names_the_local_port(self, sink: MailSink) -> None:
        assert sink.url == f"smtp://127.0.0.1:{sink.port}"

    def test_sent_messages_read_back_in_arrival_order(self, sink: MailSink) -> None:
        for number in range(5):
            send(sink.url, make_message(f"notice {number}"))
        messages = sink.messages()
        assert [m["Subject"] for m in messages] == [f"notice {n}" for n in range(5)]
        assert messages[0]["To"] == "ada@example.org"
        assert messages[0].get_content().strip() == "Body of notice 0 — déjà lu."

    def test_each_message_is_one_eml_file(self, sink: MailSink) -> None:
        send(sink.url, make_message("one"))
        send(sink.url, make_message("two"))
        files = sorted(p.name for p in sink.folder.iterdir())
        assert len(files) == 2
        assert all(name.endswith(".eml") for name in files)
        assert files == [p.name for p in sink.paths()]

    def test_envelope_recipients_are_kept(self, sink: MailSink) -> None:
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
            client.send_message(make_message("bcc"), to_addrs=["ada@example.org", "b@example.org"])
        (message,) = sink.messages()
        assert message["X-RcptTo"] == "ada@example.org, b@example.org"
        assert message["X-MailFrom"] == "library@example.org"

    def test_messages_survive_a_restart(self, tmp_path: Path) -> None:
        port = free_port()
        with MailSink(tmp_path / "mail", port) as first:
            send(first.url, make_message("before"))
        with MailSink(tmp_path / "mail", port) as second:
            send(second.url, make_message("after"))
            assert [m["Subject"] for m in second.messages()] == ["before", "after"]

    def test_empty_folder_has_no_messages(self, sink: MailSink) -> None:
        assert sink.messages() == []

    def test_second_sink_on_a_taken_port_fails_clearly(
        self, sink: MailSink, tmp_path: Path
    ) -> None:
        with pytest.raises(PortInUseError, match=f"port {sink.port} is taken"):
            MailSink(tmp_path / "other", sink.port).start()
        send(sink.url, make_message("still served"))
        assert [m["Subject"] for m in sink.messages()] == ["still served"]

    def test_stop_closes_the_port(self, tmp_path: Path) -> None:
        sink = MailSink(tmp_path / "mail", free_port())
        with sink:
            pass
        with pytest.raises(ConnectionRefusedError), smtplib.SMTP("127.0.0.1", sink.port, timeout=2):
            pass
