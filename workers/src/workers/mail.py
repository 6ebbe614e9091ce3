"""Sending one email over SMTP (`SMTP_URL`) with the standard library's smtplib, once.

A job runs at least once, so a mail job may run again after it sent its mail (its worker
killed before the job was marked done, a timeout after the send). Each mail has a dedup key;
the key is recorded in Redis the moment the server accepted the message, and a mail whose
key is recorded is not sent again. What remains is a kill between the server's "250 OK" and
the record, microseconds; for that, a mail's Message-ID is derived from the same key, which
receiving servers and clients use to drop a repeat.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from functools import lru_cache
from urllib.parse import unquote, urlsplit

import redis
from rq import get_current_job

from workers.config import Settings
from workers.errors import PermanentJobError, ServiceUnavailable

# Longer than a mail job can be retried for (RQ's retries, then the failed-job registry
# from where an operator may requeue it within a week).
SENT_TTL_S = 30 * 24 * 3600


def sent_key(dedup_key: str) -> str:
    return f"workers:mail-sent:{dedup_key}"


@lru_cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _connection(settings: Settings) -> redis.Redis:
    """The Redis of the running job; `REDIS_URL` when called outside a job (a test)."""
    job = get_current_job()
    return job.connection if job is not None else _redis(settings.redis_url)


def was_sent(dedup_key: str, settings: Settings) -> bool:
    return bool(_connection(settings).exists(sent_key(dedup_key)))


def record_sent(dedup_key: str, settings: Settings) -> None:
    _connection(settings).set(sent_key(dedup_key), 1, ex=SENT_TTL_S)


def send(message: EmailMessage, settings: Settings, *, dedup_key: str) -> bool:
    """Deliver `message` unless a mail with `dedup_key` was delivered; whether it was sent now.

    A server that is down or says "try later" is ServiceUnavailable (the job retries), one
    that refuses the recipients for good is PermanentJobError."""
    if was_sent(dedup_key, settings):
        return False
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
            # Before QUIT: the server has the message, whatever happens to this process next.
            record_sent(dedup_key, settings)
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentJobError(f"the SMTP server refused {message['To']}: {exc}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise ServiceUnavailable(f"mail to {message['To']} not sent: {exc!r}") from exc
    return True
