"""Sending one e-mail: over SMTP (``smtplib`` with ``email.message``), or, without MAIL_SERVER,
into the log (the embedded default: the admins' outbox page lists what was "sent" there)."""
from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

log = logging.getLogger("registry.mail")


@dataclass(frozen=True)
class MailSettings:
    server: str = ""
    port: int = 25
    use_tls: bool = False
    username: str = ""
    password: str = ""
    sender: str = "registry@localhost"
    timeout: float = 20.0


def build_message(*, sender: str, to: str, subject: str, text: str, html: str | None,
                  unsubscribe: str | None = None) -> EmailMessage:
    """Plain text first, HTML as the alternative; UTF-8 throughout."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    message["Auto-Submitted"] = "auto-generated"
    if unsubscribe:
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text, charset="utf-8")
    if html:
        message.add_alternative(html, subtype="html", charset="utf-8")
    return message


class SmtpMailer:
    """One connection per message (a sender runs rarely; nothing held open between messages).
    ``use_tls``: STARTTLS on a plain port, or implicit TLS on port 465."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context()
        if s.use_tls and s.port == 465:
            client = smtplib.SMTP_SSL(s.server, s.port, timeout=s.timeout, context=context)
        else:
            client = smtplib.SMTP(s.server, s.port, timeout=s.timeout)
        with client:
            if s.use_tls and s.port != 465:
                client.starttls(context=context)
            if s.username:
                client.login(s.username, s.password)
            client.send_message(message)


class LogMailer:
    """No MAIL_SERVER: each message is written to the log instead of being sent."""

    def send(self, message: EmailMessage) -> None:
        body = message.get_body(preferencelist=("plain",))
        log.info("e-mail (MAIL_SERVER not set, not sent) to %s: %s\n%s", message["To"], message["Subject"],
                 body.get_content() if body is not None else "")


def make_mailer(settings: MailSettings):
    return SmtpMailer(settings) if settings.server else LogMailer()
