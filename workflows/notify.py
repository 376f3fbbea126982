"""E-mail notifications: each message rendered from ``templates/mail/<kind>.txt`` the moment it
arises (Chinese, then English below; plain text and HTML), put in the outbox, and handed to a
background job by its id (``workflows/jobs.py``): a request never waits for a mail server.

A kind's template defines the blocks ``subject``, ``zh`` and ``en`` (plain text; a line that
is a URL becomes a link in the HTML part). An account may turn a kind off (``CHOICES``); the
messages it cannot turn off are those about its own security (reset links, verification).
"""
from __future__ import annotations

import hashlib
import hmac
import html
import logging
import re
from typing import Callable

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from registry.infra.settings import TEMPLATES_DIR
from registry.notifications.models import NotificationChoice
from registry.notifications.outbox import Outbox, Rendered

log = logging.getLogger(__name__)

# the kinds an account may turn off (each message of these carries an unsubscribe link), with
# their labels (Chinese / English) on the account page; security messages (links, new API tokens,
# withdrawals, two-factor changes) and the complainant's own case cannot be turned off
CHOICES: dict[str, tuple[str, str]] = {
    "officer_new_complaint": ("投诉队列中的新投诉", "New complaints in my queue"),
    "officer_deadline": ("投诉办理期限提醒（临近与逾期）", "Complaint deadlines (approaching and overdue)"),
    "batch_receipt": ("每批编号的登记回执", "A receipt for each batch of numbers"),
    "upload_window": ("报送期开始与截止前提醒", "Upload window opening, and a reminder before it closes"),
    "name_claimed": ("本机构名义被用于未登记编号的提醒", "Alerts when our name is claimed for numbers we never registered"),
    "statistics_reminder": ("年度统计直报填报提醒", "Reminders to file the annual statistics"),
}
CHOICE_ROLES: dict[str, tuple[str, ...]] = {  # which roles receive each kind
    "officer_new_complaint": ("regulator",), "officer_deadline": ("regulator",),
    "batch_receipt": ("institution",), "upload_window": ("institution",), "name_claimed": ("institution",),
    "statistics_reminder": ("institution",),
}
GROUPS = {"officer_digest": "officer_deadline", "window_open": "upload_window", "window_reminder": "upload_window"}


def choice_of(kind: str) -> str | None:
    group = GROUPS.get(kind, kind)
    return group if group in CHOICES else None

_URL = re.compile(r"(https?://[^\s<>\"']+)")
_DIVIDER = "—" * 20


class Notifier:
    def __init__(self, *, sessions: sessionmaker[Session], outbox: Outbox, base_url: str,
                 enqueue: Callable[[int], None], secret_key: str) -> None:
        self._secret = hashlib.sha256(b"rnr-unsubscribe:v1" + secret_key.encode()).digest()
        self._sessions = sessions
        self._outbox = outbox
        self.base_url = base_url.rstrip("/")
        self._enqueue = enqueue
        self._env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR / "mail")), undefined=StrictUndefined,
                                autoescape=False, keep_trailing_newline=False)

    def link(self, path: str) -> str:
        return self.base_url + path

    def unsubscribe_signature(self, account_id: int, choice: str) -> str:
        return hmac.new(self._secret, f"{account_id}:{choice}".encode(), hashlib.sha256).hexdigest()[:32]

    def unsubscribe_link(self, account_id: int, choice: str) -> str:
        return self.link(f"/unsubscribe/{account_id}/{choice}/{self.unsubscribe_signature(account_id, choice)}")

    def unsubscribe(self, account_id: int, choice: str, signature: str) -> bool:
        """The unsubscribe link (no sign-in needed): True when the signature is right."""
        if choice not in CHOICES or not hmac.compare_digest(self.unsubscribe_signature(account_id, choice),
                                                            (signature or "")[:64]):
            return False
        self.choose(account_id, choice, False)
        return True

    def render(self, kind: str, *, unsubscribe: str | None = None, **context) -> Rendered:
        template = self._env.get_template(f"{kind}.txt")
        ctx = template.new_context({"base_url": self.base_url, **context})
        subject, zh, en = ("".join(template.blocks[b](ctx)).strip() for b in ("subject", "zh", "en"))
        subject = " ".join(subject.split())
        footer_zh = "此邮件由报告编号登记系统自动发送，请勿直接回复。"
        footer_en = "This message was sent automatically by the Report Number Registry; please do not reply to it."
        if unsubscribe:
            footer_zh += f"\n不想再收到此类邮件：{unsubscribe}"
            footer_en += f"\nTo stop messages of this kind: {unsubscribe}"
        text = f"{zh}\n\n{_DIVIDER}\nEnglish\n{_DIVIDER}\n\n{en}\n\n--\n{footer_zh}\n{footer_en}\n"
        page = (f'<!doctype html><html><body style="font-family:sans-serif;line-height:1.5">'
                f'<div lang="zh-CN">{_html(zh)}</div><hr><div lang="en">{_html(en)}</div>'
                f'<hr><p style="color:#666;font-size:90%">{_html(footer_zh)}{_html(footer_en)}</p>'
                f"</body></html>")
        return Rendered(subject=subject, text=text, html=page, unsubscribe=unsubscribe)

    def send(self, kind: str, to: str | None, *, account_id: int | None = None, secret: bool = False,
             dedupe: str | None = None, **context) -> int | None:
        """Render and queue one message; None when there is no address or the account turned the
        kind off. The message is in the outbox (committed) before its job is queued."""
        if not to:
            return None
        choice = choice_of(kind)
        if account_id is not None and choice is not None and not self.wants(account_id, choice):
            return None
        message = self.render(kind, unsubscribe=self.unsubscribe_link(account_id, choice)
                              if account_id is not None and choice is not None else None, **context)
        with self._sessions() as session:
            row = self._outbox.add(session, kind=kind, to=to, message=message, account_id=account_id, secret=secret,
                                   dedupe=dedupe)
            if row is None:  # told before
                return None
            session.commit()
            message_id = row.id
        try:
            self._enqueue(message_id)
        except Exception:  # noqa: BLE001 - the minutely sweep sends it
            log.warning("could not queue e-mail %s; the outbox sweep will send it", message_id)
        return message_id

    # --- choices per kind --------------------------------------------------------------------
    def wants(self, account_id: int, kind: str) -> bool:
        with self._sessions() as session:
            choice = session.scalar(select(NotificationChoice.enabled).where(
                NotificationChoice.account_id == account_id, NotificationChoice.kind == kind))
            return choice is not False

    def choices(self, account_id: int) -> dict[str, bool]:
        with self._sessions() as session:
            stored = dict(tuple(row) for row in session.execute(select(NotificationChoice.kind, NotificationChoice.enabled).where(
                NotificationChoice.account_id == account_id)).all())
        return {kind: stored.get(kind, True) for kind in CHOICES}

    def choose(self, account_id: int, kind: str, enabled: bool) -> None:
        if kind not in CHOICES:
            raise ValueError(f"no such kind of message: {kind}")
        with self._sessions() as session:
            row = session.scalar(select(NotificationChoice).where(
                NotificationChoice.account_id == account_id, NotificationChoice.kind == kind))
            if row is None:
                session.add(NotificationChoice(account_id=account_id, kind=kind, enabled=enabled))
            else:
                row.enabled = enabled
            session.commit()


def _html(text: str) -> Markup:
    paragraphs = []
    for block in text.split("\n\n"):
        escaped = html.escape(block)
        linked = _URL.sub(lambda m: f'<a href="{m.group(1)}">{m.group(1)}</a>', escaped)
        paragraphs.append("<p>" + linked.replace("\n", "<br>") + "</p>")
    return Markup("".join(paragraphs))
