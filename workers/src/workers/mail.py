"""Sending one email over SMTP (`SMTP_URL`) with the standard library's smtplib."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from workers.config import Settings
from workers.errors import PermanentJobError, ServiceUnavailable


def send(message: EmailMessage, settings: Settings) -> None:
    """Deliver `message`; a server that is down or says "try later" is ServiceUnavailable
    (the job retries), one that refuses the recipients for good is PermanentJobError."""
    if settings.smtp_url is None:
        raise PermanentJobError("SMTP_URL is not set: notices cannot be mailed")
    url = urlsplit(settings.smtp_url)
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise PermanentJobError("SMTP_URL must look like smtp://host:port or smtps://host:port")
    message["From"] = settings.mail_from
    try:
        if url.scheme == "smtps":
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                url.hostname,
                url.port or 465,
                timeout=settings.smtp_timeout_s,
                context=ssl.create_default_context(),
            )
        else:
            connection = smtplib.SMTP(url.hostname, url.port or 25, timeout=settings.smtp_timeout_s)
        with connection:
            if url.username:
                connection.login(unquote(url.username), unquote(url.password or ""))
            connection.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentJobError(f"the SMTP server refused {message['To']}: {exc}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise ServiceUnavailable(f"mail to {message['To']} not sent: {exc!r}") from exc
