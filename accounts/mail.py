"""E-mail to users, sent after the answer by one background thread.

An answer never waits for the mail server, so its timing cannot tell whether a mail went out (and
so whether an account exists).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.mail import send_mail

from vantage6.logging import client_text

logger = logging.getLogger(__name__)

_sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail")


def send_later(to: str, subject: str, text: str) -> None:
    _sender.submit(_send, to, subject, text)


def _send(to: str, subject: str, text: str) -> None:
    try:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, [to])
    except Exception:  # the answer is long gone: the log is the only place left to tell
        logger.exception("Could not send an e-mail to %s", client_text(to))


def wait_sent(timeout: float = 30) -> None:
    """Until every mail queued so far has been handed to the mail server."""
    _sender.submit(lambda: None).result(timeout)
