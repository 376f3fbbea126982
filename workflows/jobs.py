"""Background jobs: checking and importing big portal uploads; sending e-mails from the outbox.

On an RQ queue when Redis is configured (``rq worker rnr-imports``; any host's worker may run
it), otherwise on a thread of the web process. A job acts only on an upload in the state it
expects (the steps' guarded transitions), so a job queued twice, or retried while the first
still runs, registers the file once. A job carries ids only — its kind, the upload
and when the uploader confirmed (and the id of the request that queued it, for the logs); the worker builds its own services from its environment
(:func:`workflows.services.services_from_environment`), once per worker process.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING, Protocol

from registry.infra.logs import request_id
from registry.numbers.quarters import Clock
from registry.registration.service import RegistrationRefused

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)

QUEUE_NAME = "rnr-imports"
JOB_TIMEOUT = 3600
FAILURE_TTL = 7 * 24 * 3600


def frozen_clock(moment: dt.datetime) -> Clock:
    """Lateness is judged when the uploader confirmed, not when a worker got round to it."""
    return lambda: moment


def run_upload_job(services: Services, kind: str, upload_id: int, confirmed_at: dt.datetime) -> None:
    """One job: ``check`` an upload, or ``import`` a confirmed one. Failures are kept on the upload."""
    try:
        if kind == "check":
            services.upload_steps.check(upload_id)
        elif kind == "import":
            services.upload_steps.import_(upload_id, registration=services.registration.at(frozen_clock(confirmed_at)))
        else:
            raise ValueError(f"unknown job kind {kind!r}")
    except RegistrationRefused:
        pass  # kept on the upload by import_
    except Exception as exc:  # noqa: BLE001 - the page shows it; the log has the trace
        log.exception("upload job %s %s failed", kind, upload_id)
        services.uploads.mark_failed(upload_id, exc.__class__.__name__)


def run_mail_job(services: Services, message_id: int) -> None:
    """Send one outbox message (the outbox's guarded claim makes a repeated job harmless)."""
    try:
        services.outbox.deliver(message_id)
    except Exception:  # noqa: BLE001 - the message stays pending; the minutely sweep retries it
        log.exception("e-mail job %s failed", message_id)


class QueueUnavailable(Exception):
    """The job could not be queued (Redis unreachable); nothing was queued."""


class JobQueue(Protocol):
    def enqueue(self, kind: str, upload_id: int, *, confirmed_at: dt.datetime) -> None: ...

    def enqueue_mail(self, message_id: int) -> None: ...

    def lengths(self) -> list[tuple[str, str, int]]:
        """(queue, state, jobs) for /metrics."""


class ThreadQueue:
    """Embedded mode: the job runs on a daemon thread of this process, on this process's services."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self.threads: list[threading.Thread] = []

    def enqueue(self, kind: str, upload_id: int, *, confirmed_at: dt.datetime) -> None:
        # in the request's context: its log lines carry the request's id (registry/infra/logs.py)
        thread = threading.Thread(target=contextvars.copy_context().run,
                                  args=(run_upload_job, self._services, kind, upload_id, confirmed_at),
                                  name=f"upload-{kind}-{upload_id}", daemon=True)
        self._start(thread)

    def enqueue_mail(self, message_id: int) -> None:
        self._start(threading.Thread(target=run_mail_job, args=(self._services, message_id),
                                     name=f"mail-{message_id}", daemon=True))

    def _start(self, thread: threading.Thread) -> None:
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()

    def lengths(self) -> list[tuple[str, str, int]]:
        return [(QUEUE_NAME, "started", sum(t.is_alive() for t in self.threads))]


class RQQueue:
    """Production: an RQ queue on the registry's Redis; ``rq worker rnr-imports`` runs the jobs."""

    def __init__(self, connection) -> None:
        import rq

        self.queue = rq.Queue(QUEUE_NAME, connection=connection)

    def enqueue(self, kind: str, upload_id: int, *, confirmed_at: dt.datetime) -> None:
        """Raises :class:`QueueUnavailable` when Redis cannot take the job."""
        import redis

        try:
            self.queue.enqueue(rq_upload_job, kind, upload_id, confirmed_at.isoformat(),
                               job_timeout=JOB_TIMEOUT, failure_ttl=FAILURE_TTL,
                               meta={"request_id": request_id.get()})
        except (redis.RedisError, OSError) as exc:
            log.warning("could not queue the %s job of upload %s: %s", kind, upload_id, exc.__class__.__name__)
            raise QueueUnavailable(str(exc)) from exc

    def lengths(self) -> list[tuple[str, str, int]]:
        """Waiting, running and failed jobs (RQ's own registries; a Redis error propagates)."""
        from rq.registry import FailedJobRegistry, StartedJobRegistry

        return [(QUEUE_NAME, "queued", self.queue.count),
                (QUEUE_NAME, "started", StartedJobRegistry(queue=self.queue).count),
                (QUEUE_NAME, "failed", FailedJobRegistry(queue=self.queue).count)]

    def enqueue_mail(self, message_id: int) -> None:
        import redis

        try:
            self.queue.enqueue(rq_mail_job, message_id, job_timeout=300, failure_ttl=FAILURE_TTL)
        except (redis.RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc)) from exc


def rq_mail_job(message_id: int) -> None:
    """The RQ entry point for one e-mail."""
    from .services import services_from_environment

    run_mail_job(services_from_environment(), message_id)


def rq_upload_job(kind: str, upload_id: int, confirmed_at: str) -> None:
    """The RQ entry point: this worker process's services, built from its environment."""
    import rq

    from .services import services_from_environment

    job = rq.get_current_job()
    request_id.set((job.meta.get("request_id") if job is not None else None) or f"job-{upload_id}")
    run_upload_job(services_from_environment(), kind, upload_id, dt.datetime.fromisoformat(confirmed_at))


def make_job_queue(services: Services) -> JobQueue:
    return RQQueue(services.redis) if services.redis is not None else ThreadQueue(services)
