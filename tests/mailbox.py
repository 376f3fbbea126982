"""A real SMTP server (aiosmtpd) started by a test, and what it received."""
from __future__ import annotations

import re
import socket
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage


class Mailbox:
    """aiosmtpd handler: every message received, parsed, with its envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self.port = 0
        self.refuse = False  # answer 451 (a temporary failure) to every message
        # called while waiting: the outbox sweep of the app under test (on the RQ stack no worker
        # runs unless a test starts one; the sweep sends what is due, as the web process's loop does)
        self.drain = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        if self.refuse:
            return "451 try again later"
        message = message_from_bytes(envelope.content, policy=policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self._lock:
            self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if address in m["X-Envelope-To"]]

    def wait_for(self, address: str, count: int = 1, timeout: float = 15.0) -> list[EmailMessage]:
        """The messages to ``address`` once there are ``count`` of them (jobs send in the background)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.drain is not None:
                self.drain()
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(self.to(address))} message(s) to {address} after {timeout}s, wanted {count}")


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def link_in(message: EmailMessage, fragment: str) -> str:
    """The first URL of the plain text containing ``fragment``."""
    for url in re.findall(r"https?://\S+", text_of(message)):
        if fragment in url:
            return url
    raise AssertionError(f"no link with {fragment!r} in {text_of(message)!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_smtp():
    """(controller, mailbox) listening on a free loopback port; the caller stops the controller."""
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    mailbox.port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    return controller, mailbox
