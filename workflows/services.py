"""The composition root: every service of a process, built once, from the settings.

The web app (``create_app`` keeps it in ``app.extensions["registry"]``), the CLI (through the
app), the RQ worker (:func:`services_from_environment`) and the in-thread job runner all get
their services here and nowhere else; views and commands ask this object, never construct a
service. Building it also installs the complaint audit chain on the session factory, so every
process seals the complaint events it writes.
"""
from __future__ import annotations

import atexit
import datetime as dt
import functools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from sqlalchemy.engine import make_url

from registry.accounts.accounts import AccountService
from registry.accounts.adminlog import AdminLog
from registry.accounts.adminlog import REDIS_HEAD_KEY as ADMIN_LOG_HEAD_KEY
from registry.accounts.idempotency import IdempotencyStore
from registry.accounts.onboarding import OnboardingService
from registry.accounts.tokens import TokenService
from registry.platforms.service import PlatformService
from registry.bloom import BloomConfig, open_bloom_index
from registry.bloom.snapshot import (FileSnapshotStore, RedisSnapshotStore, SnapshotService, SnapshotSigner,
                                     load_signing_key)
from registry.complaints.audit import AuditChain, FileChainHead, RedisChainHead, chain_for, keyring
from registry.complaints.casework import CaseworkService
from registry.complaints.holidays import HolidayService
from registry.complaints.service import ComplaintService
from registry.compliance.abnormal import AbnormalService
from registry.compliance.sanctions import SanctionService
from registry.compliance.service import ComplianceService
from registry.infra.db import make_engine, make_session_factory
from registry.infra.metrics import ProcessMetrics
from registry.infra.sealing import Sealer
from registry.notifications.mailer import MailSettings, make_mailer
from registry.notifications.outbox import Outbox
from registry.infra.redisdirect import DirectRedis
from registry.infra.settings import finish_settings, load_settings
from registry.infra.upkeep import Upkeep
from registry.institutions.directory import InstitutionDirectory
from registry.numbers.quarters import Clock, system_clock
from registry.registration.service import RegistrationService
from registry.registration.uploads import UploadService
from registry.tlog.note import parse_signer
from registry.tlog.service import TransparencyLog
from registry.statistics.checks import Thresholds
from registry.statistics.service import StatisticsService
from registry.statistics.trail import REDIS_HEAD_KEY as STATISTICS_HEAD_KEY
from registry.statistics.trail import StatisticsTrail
from registry.verification.querylog import QueryLogBuffer, QueryLogDays
from registry.complaints.attachments import purge_kept
from registry.verification.service import VerificationService

from .jobs import JobQueue, make_job_queue
from .notices import Notices
from .notify import Notifier
from .sandbox import Sandbox
from .uploads import UploadSteps
from .pending_forms import PendingForms
from .retention import Retention
from .withdrawals import PendingChanges

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceSettings:
    """The settings the services need, typed (from load_settings()/finish_settings())."""

    database_url: str
    redis_url: str
    bloom_dir: Path
    files_dir: Path
    secret_key: str
    audit_key: str = ""
    audit_keys: str = ""
    bloom_capacity: int = 10_000_000
    bloom_error_rate: float = 0.001
    bloom_shards: int = 0
    bloom_rebuild_memory_mb: int = 512
    background_interval: float = 3.0
    max_upload_bytes: int = 200 * 1024 * 1024
    upload_files_days: int = 90
    upload_stuck_minutes: int = 15
    api_token_days: int = 365
    parse_memory_mb: int = 1024
    parse_seconds: int = 300
    query_log_days: int = 180
    metrics_dir: Path | None = None
    complaint_contact_days: int = 1095
    outbox_days: int = 90
    database_replica_urls: tuple[str, ...] = ()
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = ""
    replica_max_lag_seconds: float = 2.0
    tlog_origin: str = "registry.localhost/tlog"
    tlog_signing_key: str = ""  # only on the log's one integrator
    tlog_interval: float = 10.0
    stats_thresholds: Thresholds = Thresholds()
    encryption_keys: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    mail: MailSettings = MailSettings()
    snapshot_signing_key: str = ""
    sanction_hearing_days: int = 5
    stats_attachment_bytes: int = 20 * 1024 * 1024
    stats_attachments_per_section: int = 5

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "ServiceSettings":
        return cls(
            database_url=values["DATABASE_URL"],
            redis_url=values.get("REDIS_URL") or "",
            redis_sentinels=tuple((host, int(port)) for host, port in values.get("REDIS_SENTINELS") or ()),
            redis_sentinel_master=values.get("REDIS_SENTINEL_MASTER") or "",
            bloom_dir=Path(values["BLOOM_DIR"]),
            files_dir=Path(values["FILES_DIR"]),
            secret_key=values["SECRET_KEY"],
            audit_key=values.get("AUDIT_KEY") or "",
            audit_keys=values.get("AUDIT_KEYS") or "",
            bloom_capacity=int(values["BLOOM_CAPACITY"]),
            bloom_error_rate=float(values["BLOOM_ERROR_RATE"]),
            bloom_shards=int(values["BLOOM_SHARDS"]),
            bloom_rebuild_memory_mb=int(values.get("BLOOM_REBUILD_MEMORY_MB", 512)),
            background_interval=float(values["BACKGROUND_INTERVAL"]),
            max_upload_bytes=int(values["MAX_UPLOAD_BYTES"]),
            upload_files_days=int(values.get("UPLOAD_FILES_DAYS", 90)),
            upload_stuck_minutes=int(values.get("UPLOAD_STUCK_MINUTES", 15)),
            api_token_days=int(values.get("API_TOKEN_DAYS") or 365),
            parse_memory_mb=int(values.get("PARSE_MEMORY_MB", 1024)),
            parse_seconds=int(values.get("PARSE_SECONDS", 300)),
            query_log_days=int(values.get("QUERY_LOG_DAYS", 180)),
            complaint_contact_days=int(values.get("COMPLAINT_CONTACT_DAYS", 1095)),
            outbox_days=int(values.get("OUTBOX_DAYS", 90)),
            database_replica_urls=tuple(_url_list(values.get("DATABASE_REPLICA_URLS") or ())),
            replica_max_lag_seconds=float(values.get("REPLICA_MAX_LAG_SECONDS", 2.0)),
            tlog_origin=values.get("TLOG_ORIGIN") or "registry.localhost/tlog",
            tlog_signing_key=values.get("TLOG_SIGNING_KEY") or "",
            tlog_interval=float(values.get("TLOG_INTERVAL", 10)),
            stats_thresholds=Thresholds(
                reports_tolerance=float(values.get("STATS_REPORTS_TOLERANCE", 0.05)),
                yoy=float(values.get("STATS_YOY_THRESHOLD", 0.5)),
                median_factor=float(values.get("STATS_MEDIAN_FACTOR", 5)),
                min_peers=int(values.get("STATS_MIN_PEERS", 5))),
            sanction_hearing_days=int(values.get("SANCTION_HEARING_DAYS", 5)),
            stats_attachment_bytes=int(values.get("STATS_ATTACHMENT_MAX_MB", 20)) * 1024 * 1024,
            stats_attachments_per_section=int(values.get("STATS_ATTACHMENTS_PER_SECTION", 5)),
            metrics_dir=Path(values["PROMETHEUS_MULTIPROC_DIR"]) if values.get("PROMETHEUS_MULTIPROC_DIR") else None,
            encryption_keys=values.get("ENCRYPTION_KEYS") or "",
            public_base_url=values.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000",
            mail=MailSettings(server=values.get("MAIL_SERVER") or "", port=int(values.get("MAIL_PORT") or 25),
                              use_tls=bool(values.get("MAIL_USE_TLS")), username=values.get("MAIL_USERNAME") or "",
                              password=values.get("MAIL_PASSWORD") or "",
                              sender=values.get("MAIL_FROM") or "registry@localhost"),
            snapshot_signing_key=values.get("SNAPSHOT_SIGNING_KEY") or "",
        )


def _url_list(value) -> list[str]:
    """A list of URLs, given as one comma-separated text (a config value) or as a list."""
    return [u.strip() for u in value.split(",") if u.strip()] if isinstance(value, str) else list(value)


def snapshot_signer(value: str) -> SnapshotSigner:
    """The snapshot's signer from ``SNAPSHOT_SIGNING_KEY`` (finish_settings fills it); without one, a
    key for this process only (its snapshots verify only against this process's public key)."""
    if not value:
        from registry.bloom.snapshot import new_signing_key_pem

        log.warning("SNAPSHOT_SIGNING_KEY is not set: offline snapshots are signed with a key of this process only")
        value = new_signing_key_pem()
    return SnapshotSigner(load_signing_key(value))


REDIS_OPTIONS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "health_check_interval": 30,
                 "retry_on_timeout": False}


def make_redis(url: str, sentinels: Sequence[tuple[str, int]] = (), master: str = ""):
    """The registry's Redis client. With ``sentinels`` (``REDIS_SENTINELS``), a client of the
    primary that the Sentinels name for ``master`` (redis-py's ``Sentinel.master_for``): each new
    connection asks them where the primary is, so after a promotion the reconnects reach the new
    one; ``url`` then gives the database, user, password and TLS only."""
    import redis

    if not sentinels:
        return redis.Redis.from_url(url, **REDIS_OPTIONS)
    from redis.sentinel import Sentinel

    auth = url_auth(url)
    # the Sentinels are asked with the URL's user and password too (as the rate limiter's
    # ``limits`` storage does): a deployment gives them the primary's
    asked = {key: auth[key] for key in ("username", "password") if key in auth}
    asked.update((key, REDIS_OPTIONS[key]) for key in ("socket_timeout", "socket_connect_timeout"))
    return Sentinel(list(sentinels), sentinel_kwargs=asked, **REDIS_OPTIONS).master_for(master, **auth)


def url_auth(url: str) -> dict:
    """The database, user, password and TLS of a Redis URL (its host and port left out)."""
    from redis.connection import SSLConnection, parse_url

    parsed = parse_url(url)
    out = {key: parsed[key] for key in ("db", "username", "password") if parsed.get(key) is not None}
    if parsed.get("connection_class") is SSLConnection:
        out["ssl"] = True
    return out


class Services:
    """One per process (per app): the engine, Redis, the Bloom index, the directory, the query
    log, every domain service, the audit chain, the upload steps and the job queue."""

    def __init__(self, settings: ServiceSettings, *, clock: Clock | None = None) -> None:
        clock = clock or system_clock
        self.settings = settings
        self.clock = clock
        # --- infrastructure ---
        self.engine = make_engine(settings.database_url)
        # read replicas of the primary: only the verification read path uses them
        if settings.database_replica_urls and self.engine.dialect.name != "postgresql":
            raise ValueError("DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL")
        self.replica_engines = [(make_url(url).render_as_string(hide_password=True), make_engine(url))
                                for url in settings.database_replica_urls]
        self.sessions = make_session_factory(self.engine)
        self.redis = make_redis(settings.redis_url, settings.redis_sentinels,
                                settings.redis_sentinel_master) if settings.redis_url else None
        # per-thread connection for the verify hot path: the Bloom probe and the rate-limit count share its exchange
        self.hot_redis = DirectRedis(self.redis) if self.redis is not None else None
        settings.bloom_dir.mkdir(parents=True, exist_ok=True)
        settings.files_dir.mkdir(parents=True, exist_ok=True)
        self.audit_chain: AuditChain = chain_for(secret_key=settings.secret_key, audit_key=settings.audit_key,
                                                 audit_keys=settings.audit_keys, files_dir=settings.files_dir,
                                                 redis=self.redis)
        self.audit_chain.install(self.sessions)  # seal every complaint event written through these sessions
        if self.audit_key_missing:
            log.warning("AUDIT_KEY/AUDIT_KEYS is not set: the complaint audit chain is sealed with a key derived "
                        "from SECRET_KEY, so rotating SECRET_KEY would make every sealed event unverifiable; "
                        "set AUDIT_KEY (or AUDIT_KEYS) in production")
        # --- numbers: registration and verification ---
        self.bloom = open_bloom_index(
            config=BloomConfig(
                capacity=settings.bloom_capacity, error_rate=settings.bloom_error_rate, shards=settings.bloom_shards,
                rebuild_memory=settings.bloom_rebuild_memory_mb * 1024 * 1024,
            ),
            engine=self.engine,
            directory=settings.bloom_dir,
            redis=self.redis,
            direct_redis=self.hot_redis,
            logger=log,
        )
        # offline pre-check snapshots for keyed platforms, signed with their own key
        self.snapshots = SnapshotService(
            bloom=self.bloom, engine=self.engine, clock=clock, signer=snapshot_signer(settings.snapshot_signing_key),
            store=(RedisSnapshotStore(self.redis) if self.redis is not None
                   else FileSnapshotStore(settings.bloom_dir / "snapshots")))
        self.directory = InstitutionDirectory()
        self.query_log_days = QueryLogDays(engine=self.engine)
        self.query_log = QueryLogBuffer(engine=self.engine, secret=settings.secret_key.encode(),
                                        days=self.query_log_days)
        self.verifier = VerificationService(engine=self.engine, bloom=self.bloom, directory=self.directory, clock=clock,
                                            replicas=self.replica_engines,
                                            replica_max_lag=settings.replica_max_lag_seconds)
        self.registration = RegistrationService(sessions=self.sessions, bloom=self.bloom, clock=clock)
        self.uploads = UploadService(sessions=self.sessions, files_dir=settings.files_dir, clock=clock,
                                     stuck_after=dt.timedelta(minutes=settings.upload_stuck_minutes),
                                     keep_files=dt.timedelta(days=settings.upload_files_days))
        # every uploaded file is parsed in a limited child interpreter (workflows/sandbox.py)
        self.sandbox = Sandbox(memory_mb=settings.parse_memory_mb, seconds=settings.parse_seconds)
        self.upload_steps = UploadSteps(uploads=self.uploads, registration=self.registration,
                                        max_bytes=settings.max_upload_bytes, sandbox=self.sandbox)
        self.pending_changes = PendingChanges(settings.files_dir)  # withdrawals/restores awaiting confirmation
        self.pending_forms = PendingForms(settings.files_dir)  # answers on a check page awaiting confirmation
        # --- accounts, and the sealed admin log (a sibling chain of the complaint audit chain) ---
        admin_head = (RedisChainHead(self.redis, ADMIN_LOG_HEAD_KEY) if self.redis is not None
                      else FileChainHead(settings.files_dir / "admin-log"))
        # the same key ring as the complaint chain (each key through the admin log's own subkey)
        self.admin_log = AdminLog(keys=keyring(secret_key=settings.secret_key, audit_key=settings.audit_key,
                                               audit_keys=settings.audit_keys),
                                  head=admin_head, clock=clock)
        self.admin_log.install(self.sessions)
        # the outbox's secrets and TOTP secrets, encrypted (ENCRYPTION_KEYS, else derived from SECRET_KEY)
        self.sealer = Sealer(keys=settings.encryption_keys, secret_key=settings.secret_key)
        self.accounts = AccountService(sessions=self.sessions, clock=clock, admin_log=self.admin_log,
                                       sealer=self.sealer)
        # --- e-mail: the outbox, sent by jobs (RQ, or a thread) and swept every minute ---
        self.outbox = Outbox(sessions=self.sessions, sealer=self.sealer, mailer=make_mailer(settings.mail),
                             sender=settings.mail.sender, clock=clock)
        self.notifier = Notifier(sessions=self.sessions, outbox=self.outbox, base_url=settings.public_base_url,
                                 enqueue=lambda message_id: self.jobs.enqueue_mail(message_id),
                                 secret_key=settings.secret_key)
        self.tokens = TokenService(sessions=self.sessions, clock=clock, days=settings.api_token_days)
        self.platforms = PlatformService(sessions=self.sessions, engine=self.engine, clock=clock,
                                         admin_log=self.admin_log)
        self.idempotency = IdempotencyStore(sessions=self.sessions, clock=clock)
        # --- complaints and compliance ---
        self.holidays = HolidayService(sessions=self.sessions, admin_log=self.admin_log)
        self.complaints = ComplaintService(sessions=self.sessions, directory=self.directory, clock=clock,
                                           chain=self.audit_chain)
        self.casework = CaseworkService(sessions=self.sessions, clock=clock, files_dir=settings.files_dir)
        self.compliance = ComplianceService(sessions=self.sessions, clock=clock)
        self.abnormal = AbnormalService(sessions=self.sessions, clock=clock)
        self.retention = Retention(engine=self.engine, days=self.query_log_days, complaints=self.complaints,
                                   clock=clock, query_log_days=settings.query_log_days,
                                   complaint_contact_days=settings.complaint_contact_days,
                                   outbox=self.outbox, accounts=self.accounts, outbox_days=settings.outbox_days,
                                   lock_dir=settings.files_dir)
        # --- the transparency log: every host serves it; the key holder integrates it ---
        self.tlog = TransparencyLog(
            sessions=self.sessions, origin=settings.tlog_origin, clock=clock,
            signer=parse_signer(settings.tlog_signing_key) if settings.tlog_signing_key else None)
        # --- annual statistics: filings sealed into their own sibling chain of the admin log ---
        statistics_head = (RedisChainHead(self.redis, STATISTICS_HEAD_KEY) if self.redis is not None
                           else FileChainHead(settings.files_dir / "statistics-log"))
        self.statistics_trail = StatisticsTrail(keys=keyring(secret_key=settings.secret_key,
                                                             audit_key=settings.audit_key,
                                                             audit_keys=settings.audit_keys),
                                                head=statistics_head, clock=clock)
        self.statistics_trail.install(self.sessions)
        self.statistics = StatisticsService(sessions=self.sessions, trail=self.statistics_trail, clock=clock,
                                            thresholds=settings.stats_thresholds, files_dir=settings.files_dir,
                                            admin_log=self.admin_log,
                                            max_attachment_bytes=settings.stats_attachment_bytes,
                                            max_attachments=settings.stats_attachments_per_section)
        self.sanctions = SanctionService(sessions=self.sessions, admin_log=self.admin_log, abnormal=self.abnormal,
                                         clock=clock, hearing_days=settings.sanction_hearing_days)
        # --- this process's figures for /metrics (registry/infra/metrics.py) ---
        self.metrics = ProcessMetrics(settings.metrics_dir)
        self.metrics.read_from(query_log=self.query_log, verifier=self.verifier)
        self.onboarding = OnboardingService(sessions=self.sessions, accounts=self.accounts, clock=clock,
                                            admin_log=self.admin_log)
        # --- who is told what by e-mail (workflows/notices.py) ---
        self.notices = Notices(sessions=self.sessions, notifier=self.notifier, casework=self.casework, clock=clock)
        # --- this process's background work ---
        self.upkeep = Upkeep(sessions=self.sessions, directory=self.directory, bloom=self.bloom,
                             query_log=self.query_log, interval=settings.background_interval,
                             hourly=[self.uploads.delete_old_files,
                                     functools.partial(purge_kept, settings.files_dir), self.snapshots.hourly],
                             daily=[self.retention.run, self.notices.daily],
                             periodic=[(settings.background_interval, self.metrics.write), (60.0, self.notices.sweep), (60.0, self.sweep_outbox),
                                       *([(settings.tlog_interval, self.tlog.integrate)] if self.tlog.integrates else [])])
        self._jobs: JobQueue | None = None
        self._jobs_lock = threading.Lock()
        self._closed = False

    @property
    def audit_key_missing(self) -> bool:
        """PostgreSQL (production) with the chain's key derived from SECRET_KEY: /readyz degraded."""
        return self.engine.dialect.name == "postgresql" and not self.audit_chain.configured

    @property
    def jobs(self) -> JobQueue:
        """The job queue: RQ when Redis is configured, else a thread of this process (built once)."""
        with self._jobs_lock:
            if self._jobs is None:
                self._jobs = make_job_queue(self)
            return self._jobs

    def sweep_outbox(self) -> None:
        """Every minute: queue a job for each e-mail whose time has come (retries, and any
        whose job was lost); the loop itself never waits for a mail server."""
        self.outbox.abandon_stale()
        for message_id in self.outbox.due():
            self.jobs.enqueue_mail(message_id)

    # --- the per-process background loop (registry/infra/upkeep.py) ---------------------------
    def refresh(self, *, auto_rebuild: bool = True) -> None:
        self.upkeep.refresh(auto_rebuild=auto_rebuild)

    def start_rebuild(self, *, wait: bool = False) -> None:
        self.upkeep.start_rebuild(wait=wait)

    @property
    def rebuilding(self) -> bool:
        return self.upkeep.rebuilding

    @property
    def last_refresh_error(self) -> str | None:
        return self.upkeep.last_refresh_error

    def ensure_background(self) -> None:
        """Start this process's background loop once (after a fork, again in the child)."""
        if self.upkeep.ensure_background():
            atexit.register(self.close)

    def wait_until_trusted(self, timeout: float = 60.0) -> bool:
        """For the CLI and tests: check the index, rebuilding it here and now if it lost bits."""
        return self.upkeep.wait_until_trusted(timeout)

    def close(self) -> None:
        """Stop the loop, flush the query log, release connections (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        self.upkeep.stop()
        self.query_log.flush()
        self.metrics.write()
        self.verifier.close_reader()
        self.platforms.close()
        try:
            self.bloom.close()
        finally:
            self.engine.dispose()
            for _, engine in self.replica_engines:
                engine.dispose()
            if self.redis is not None:
                self.redis.close()


def build_services(settings: Mapping[str, Any], *, clock: Clock | None = None) -> Services:
    """The services of one process from finished settings (``load_settings()`` then
    ``finish_settings()``, or the web app's config)."""
    return Services(ServiceSettings.from_mapping(settings), clock=clock)


_per_process: dict[int, Services] = {}
_per_process_lock = threading.Lock()


def services_from_environment() -> Services:
    """This process's services, built once from its own environment (the RQ worker's way: a
    job carries ids only, never settings)."""
    pid = os.getpid()
    with _per_process_lock:
        services = _per_process.get(pid)
        if services is None:
            services = _per_process[pid] = build_services(finish_settings(load_settings()))
            atexit.register(services.close)
        return services
