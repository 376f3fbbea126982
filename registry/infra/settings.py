"""Settings: the environment is read here and nowhere else (docs/contract.md, "Settings").

Flask-free, so the web app, the CLI and the RQ worker read the same settings the same way. The
project's own folders (templates, translations, migrations) are found from here only."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = ROOT / "templates"
TRANSLATIONS_DIR = ROOT / "translations"
MIGRATIONS_DIR = ROOT / "migrations"
ALEMBIC_INI = ROOT / "alembic.ini"
# the demo's sample report, its fingerprint registered by the demo data (tools/demo_report.py)
DEMO_REPORT = ROOT / "portal" / "static" / "demo" / "sample-report.pdf"


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None


def _positive(value: str, name: str) -> int:
    number = _int(value, name)
    if number < 1:
        raise ValueError(f"{name} must be at least 1, not {value!r}")
    return number


def _networks(value: str, name: str) -> tuple[str, ...]:
    """Comma-separated networks (``10.0.0.0/8``, ``::1/128``; a bare address is one host)."""
    import ipaddress

    out = []
    for part in value.split(","):
        if part.strip():
            try:
                out.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{name} must list networks like 127.0.0.1/32,10.0.0.0/8, not {part.strip()!r}") from None
    return tuple(out)


def _choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value.strip().lower() not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value.strip().lower()


def _float(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}") from None


def _base_url(value: str, name: str) -> str:
    """An absolute http(s) URL without query or fragment, no trailing slash."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{name} must be an absolute http(s) URL like https://verify.example.cn, not {value!r}")
    return value.strip().rstrip("/")


def _replica_urls(value: str) -> list[str]:
    """``DATABASE_REPLICA_URLS``: comma-separated PostgreSQL URLs, zero or more."""
    urls = [part.strip() for part in value.split(",") if part.strip()]
    for url in urls:
        if not url.startswith("postgresql"):
            raise ValueError("DATABASE_REPLICA_URLS must list PostgreSQL URLs "
                             "(postgresql+psycopg://user@host/db), comma-separated")
    return urls


def _sentinels(value: str) -> list[tuple[str, int]]:
    """``REDIS_SENTINELS``: comma-separated ``host:port`` of Redis Sentinels, zero or more."""
    out = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS must list host:port, comma-separated, not {part!r}")
        out.append((host, int(port)))
    return out


def _positive_seconds(value: str, name: str) -> float:
    number = _float(value, name)
    if not number > 0:
        raise ValueError(f"{name} must be more than 0, not {value!r}")
    return number


def _audit_keys(value: str) -> str:
    """``AUDIT_KEYS`` checked now (an empty entry or a repeated id is refused at start-up)."""
    if value.strip():
        from registry.complaints.audit import parse_audit_keys

        parse_audit_keys(value)
    return value.strip()


def _snapshot_key(value: str) -> str:
    """``SNAPSHOT_SIGNING_KEY`` checked now (a key that does not load is refused at start-up)."""
    if value.strip():
        from registry.bloom.snapshot import load_signing_key

        load_signing_key(value)
    return value.strip()


DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TLOG_ORIGIN = "registry.localhost/tlog"


def _tlog_origin(value: str) -> str:
    from registry.tlog.note import valid_name

    if not valid_name(value.strip()):
        raise ValueError(f"TLOG_ORIGIN is the log's name: no spaces and no '+', not {value!r}")
    return value.strip()


def _tlog_signing_key(value: str, origin: str) -> str:
    """``TLOG_SIGNING_KEY`` checked now: a signing key in the sumdb/note format named ``origin``."""
    from registry.tlog.note import KeyFormatError, parse_signer

    try:
        signer = parse_signer(value)
    except KeyFormatError as exc:
        raise ValueError(f"TLOG_SIGNING_KEY: {exc}") from None
    if signer.name != origin:
        raise ValueError(f"TLOG_SIGNING_KEY is named {signer.name!r} but TLOG_ORIGIN is {origin!r}: they must agree")
    return value.strip()


def _flag(value: str, name: str) -> bool:
    lowered = (value or "").strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), not {value!r}")


def _encryption_keys(value: str) -> str:
    if value.strip():
        from registry.infra.sealing import parse_keys

        parse_keys(value)
    return value.strip()


def mail_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Outgoing e-mail. Without MAIL_SERVER messages are written to the log (and listed on the
    admins' outbox page) instead of being sent."""
    port = _int(env.get("MAIL_PORT") or "25", "MAIL_PORT")
    if not 0 < port < 65536:
        raise ValueError("MAIL_PORT must be a port number (1-65535)")
    return {
        "MAIL_SERVER": (env.get("MAIL_SERVER") or "").strip(),
        "MAIL_PORT": port,
        "MAIL_USE_TLS": _flag(env.get("MAIL_USE_TLS", "0"), "MAIL_USE_TLS"),
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or "",
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or "",
        "MAIL_FROM": (env.get("MAIL_FROM") or "registry@localhost").strip(),
    }


def load_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Typed settings from ``environ`` (default ``os.environ``) with the embedded defaults."""
    env = os.environ if environ is None else environ
    instance = Path(env.get("INSTANCE_DIR") or ROOT / "instance")
    error_rate = _float(env.get("BLOOM_ERROR_RATE", "0.001"), "BLOOM_ERROR_RATE")
    if not 0 < error_rate < 0.5:
        raise ValueError("BLOOM_ERROR_RATE must be between 0 and 0.5")
    return {
        "INSTANCE_DIR": str(instance),
        "DATABASE_URL": env.get("DATABASE_URL") or "",
        "REDIS_URL": env.get("REDIS_URL") or "",
        # Sentinels that name the current Redis primary of REDIS_SENTINEL_MASTER (workflows/services.py)
        "REDIS_SENTINELS": _sentinels(env.get("REDIS_SENTINELS") or ""),
        "REDIS_SENTINEL_MASTER": (env.get("REDIS_SENTINEL_MASTER") or "").strip(),
        # streaming replicas of DATABASE_URL for the positive lookups (registry/verification/replicas.py)
        "DATABASE_REPLICA_URLS": _replica_urls(env.get("DATABASE_REPLICA_URLS") or ""),
        "REPLICA_MAX_LAG_SECONDS": _positive_seconds(env.get("REPLICA_MAX_LAG_SECONDS", "2"), "REPLICA_MAX_LAG_SECONDS"),
        "SECRET_KEY": env.get("SECRET_KEY") or "",
        "AUDIT_KEY": env.get("AUDIT_KEY") or "",  # the complaint audit chain's key; derived from SECRET_KEY if empty
        # the chain's keys, newest first (id:secret or secret, comma-separated); replaces AUDIT_KEY
        "AUDIT_KEYS": _audit_keys(env.get("AUDIT_KEYS") or ""),
        "FILES_DIR": env.get("FILES_DIR") or "",
        # the offline snapshot's own Ed25519 key (PEM or base64 seed); generated into the instance folder if empty
        "SNAPSHOT_SIGNING_KEY": _snapshot_key(env.get("SNAPSHOT_SIGNING_KEY") or ""),
        "RATELIMIT_SNAPSHOT": env.get("RATELIMIT_SNAPSHOT", "6/hour;24/day"),
        "RATELIMIT_SNAPSHOT_DELTAS": env.get("RATELIMIT_SNAPSHOT_DELTAS", "60/hour;600/day"),
        "RATELIMIT_VERIFY": env.get("RATELIMIT_VERIFY", "30/minute;500/day"),
        "RATELIMIT_COMPLAINT": env.get("RATELIMIT_COMPLAINT", "5/hour"),
        "RATELIMIT_SUGGEST": env.get("RATELIMIT_SUGGEST", "60/minute;2000/day"),
        "RATELIMIT_LOG": env.get("RATELIMIT_LOG", "120/minute;20000/day"),  # the transparency log's routes, one budget per client for all of them
        "RATELIMIT_TRACK": env.get("RATELIMIT_TRACK", "10/minute;50/day"),  # misses only
        "BLOOM_ERROR_RATE": error_rate,
        "BLOOM_CAPACITY": _int(env.get("BLOOM_CAPACITY", "10000000"), "BLOOM_CAPACITY"),
        "BLOOM_SHARDS": _int(env.get("BLOOM_SHARDS", "0"), "BLOOM_SHARDS"),
        "BLOOM_REBUILD_MEMORY_MB": _positive(env.get("BLOOM_REBUILD_MEMORY_MB", "512"), "BLOOM_REBUILD_MEMORY_MB"),
        "TRUSTED_PROXIES": _int(env.get("TRUSTED_PROXIES", "0"), "TRUSTED_PROXIES"),
        "BACKGROUND_INTERVAL": _float(env.get("BACKGROUND_INTERVAL", "3"), "BACKGROUND_INTERVAL"),
        "API_TOKEN_DAYS": _int(env.get("API_TOKEN_DAYS", "365"), "API_TOKEN_DAYS"),
        "MAX_UPLOAD_BYTES": _int(env.get("MAX_UPLOAD_BYTES", str(200 * 1024 * 1024)), "MAX_UPLOAD_BYTES"),
        # portal uploads holding more numbers (ranges expanded) are checked and imported by a job
        "UPLOAD_BACKGROUND_NUMBERS": _int(env.get("UPLOAD_BACKGROUND_NUMBERS", "100000"), "UPLOAD_BACKGROUND_NUMBERS"),
        "UPLOAD_FILES_DAYS": _int(env.get("UPLOAD_FILES_DAYS", "90"), "UPLOAD_FILES_DAYS"),
        "UPLOAD_STUCK_MINUTES": _int(env.get("UPLOAD_STUCK_MINUTES", "15"), "UPLOAD_STUCK_MINUTES"),
        # uploaded files are parsed in a child interpreter limited to this address space and CPU time
        "PARSE_MEMORY_MB": _int(env.get("PARSE_MEMORY_MB", "1024"), "PARSE_MEMORY_MB"),
        "PARSE_SECONDS": _int(env.get("PARSE_SECONDS", "300"), "PARSE_SECONDS"),
        "RATELIMIT_UPLOAD_API": env.get("RATELIMIT_UPLOAD_API", "120/minute;20000/day"),
        # retention of personal data (workflows/retention.py, docs/operations.md)
        "QUERY_LOG_DAYS": _positive(env.get("QUERY_LOG_DAYS", "180"), "QUERY_LOG_DAYS"),
        "COMPLAINT_CONTACT_DAYS": _positive(env.get("COMPLAINT_CONTACT_DAYS", "1095"), "COMPLAINT_CONTACT_DAYS"),
        "OUTBOX_DAYS": _positive(env.get("OUTBOX_DAYS", "90"), "OUTBOX_DAYS"),
        # how long the operator keeps each backup (docs/operations.md, "Retention of personal data"): said on /privacy
        "BACKUP_KEEP_DAYS": _positive(env.get("BACKUP_KEEP_DAYS", "35"), "BACKUP_KEEP_DAYS"),
        # annual statistics quality checks (registry/statistics/checks.py)
        "STATS_REPORTS_TOLERANCE": _float(env.get("STATS_REPORTS_TOLERANCE", "0.05"), "STATS_REPORTS_TOLERANCE"),
        "STATS_YOY_THRESHOLD": _float(env.get("STATS_YOY_THRESHOLD", "0.5"), "STATS_YOY_THRESHOLD"),
        "STATS_MEDIAN_FACTOR": _float(env.get("STATS_MEDIAN_FACTOR", "5"), "STATS_MEDIAN_FACTOR"),
        "STATS_MIN_PEERS": _int(env.get("STATS_MIN_PEERS", "5"), "STATS_MIN_PEERS"),
        # the annual report's PDF attachments: the largest file (MB), and how many per section
        "STATS_ATTACHMENT_MAX_MB": _positive(env.get("STATS_ATTACHMENT_MAX_MB", "20"), "STATS_ATTACHMENT_MAX_MB"),
        "STATS_ATTACHMENTS_PER_SECTION": _positive(env.get("STATS_ATTACHMENTS_PER_SECTION", "5"),
                                                   "STATS_ATTACHMENTS_PER_SECTION"),
        # working days an institution has to state its case against a proposed measure (陈述申辩)
        "SANCTION_HEARING_DAYS": _int(env.get("SANCTION_HEARING_DAYS", "5"), "SANCTION_HEARING_DAYS"),
        # /metrics (portal/metrics.py, docs/operations.md "Metrics and logs"): who may scrape, and
        # where each process leaves its figures for the others (empty: INSTANCE_DIR/metrics)
        "METRICS_ALLOW": _networks(env.get("METRICS_ALLOW", "127.0.0.1/32,::1/128"), "METRICS_ALLOW"),
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or "",
        "PROMETHEUS_MULTIPROC_DIR": env.get("PROMETHEUS_MULTIPROC_DIR") or "",
        "LOG_FORMAT": _choice(env.get("LOG_FORMAT") or "text", "LOG_FORMAT", ("text", "json")),
        # every absolute link (QR codes above all) starts here, never with the request's Host header
        "PUBLIC_BASE_URL": _base_url(env.get("PUBLIC_BASE_URL") or DEFAULT_PUBLIC_BASE_URL, "PUBLIC_BASE_URL"),
        # the CJK font of printable receipts, "path" or "path:face" (empty: Noto Sans CJK where Debian puts it)
        "RECEIPT_FONT": (env.get("RECEIPT_FONT") or "").strip(),
        # the transparency log (docs/transparency.md): its origin (= its key's name) and, on the one
        # integrator only, its signing key; the embedded default keeps a generated key in instance/
        "TLOG_ORIGIN": _tlog_origin(env.get("TLOG_ORIGIN") or DEFAULT_TLOG_ORIGIN),
        "TLOG_SIGNING_KEY": (env.get("TLOG_SIGNING_KEY") or "").strip(),
        "TLOG_INTERVAL": _float(env.get("TLOG_INTERVAL", "10"), "TLOG_INTERVAL"),
        # regulator and admin accounts must use two-factor sign-in (`make run`'s demo turns it off)
        "REQUIRE_2FA": _flag(env.get("REQUIRE_2FA", "1"), "REQUIRE_2FA"),
        # Fernet keys, newest first, for the outbox's secrets and TOTP secrets; derived from SECRET_KEY if empty
        "ENCRYPTION_KEYS": _encryption_keys(env.get("ENCRYPTION_KEYS") or ""),
        **mail_settings(env),
        **site_settings(env),
    }


# Who runs the site (docs/contract.md, "Settings"): the footer of every page and /privacy name the
# operator, a contact, a help line and the filing numbers. The embedded default says it is a demo.
DEMO_OPERATOR = "演示站点，非官方服务"
DEMO_OPERATOR_EN = "Demo site, not an official service"
SITE_TEXTS = ("SITE_OPERATOR", "SITE_CONTACT", "SITE_HELPLINE")  # each with an _EN variant
SITE_IDS = ("SITE_ICP", "SITE_PSB")  # 京ICP备…号 / 京公网安备…号: no translation


def site_settings(env: Mapping[str, str]) -> dict[str, Any]:
    def text(name: str, default: str = "") -> str:
        return " ".join((env.get(name) or default).split())[:300]

    operator = text("SITE_OPERATOR")
    out: dict[str, Any] = {
        # no operator configured: this is a demo, and every page says so (see is_demo_site)
        "SITE_OPERATOR": operator or DEMO_OPERATOR,
        "SITE_OPERATOR_EN": text("SITE_OPERATOR_EN") or (DEMO_OPERATOR_EN if not operator else operator),
    }
    for name in SITE_TEXTS[1:]:
        out[name] = text(name)
        out[f"{name}_EN"] = text(f"{name}_EN") or out[name]
    for name in SITE_IDS:
        out[name] = text(name)
    return out


def is_demo_site(config: Mapping[str, Any]) -> bool:
    return (config.get("SITE_OPERATOR") or DEMO_OPERATOR) == DEMO_OPERATOR


def redis_url(config: Mapping[str, Any]) -> str:
    """``REDIS_URL``; with ``REDIS_SENTINELS`` it gives the database, user and password only (the
    Sentinels give the address), and defaults to database 0 of ``REDIS_SENTINEL_MASTER``."""
    if not config.get("REDIS_SENTINELS"):
        return config.get("REDIS_URL") or ""
    if not config.get("REDIS_SENTINEL_MASTER"):
        raise ValueError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the name the Sentinels monitor)")
    return config.get("REDIS_URL") or f"redis://{config['REDIS_SENTINEL_MASTER']}/0"


def finish_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Fill the defaults that depend on other settings (paths under the instance folder)."""
    instance = Path(config["INSTANCE_DIR"])
    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{instance / 'registry.db'}"
    if not config.get("FILES_DIR"):
        config["FILES_DIR"] = str(instance / "files")
    config.setdefault("BLOOM_DIR", str(instance / "bloom"))
    if not config.get("PROMETHEUS_MULTIPROC_DIR"):
        config["PROMETHEUS_MULTIPROC_DIR"] = str(instance / "metrics")
    config["REDIS_URL"] = redis_url(config)
    config["PUBLIC_BASE_URL"] = _base_url(config.get("PUBLIC_BASE_URL") or DEFAULT_PUBLIC_BASE_URL, "PUBLIC_BASE_URL")
    _private_folders(instance, Path(config["FILES_DIR"]))
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _instance_secret(instance)
    origin = config.setdefault("TLOG_ORIGIN", DEFAULT_TLOG_ORIGIN)
    if config.get("TLOG_SIGNING_KEY"):
        config["TLOG_SIGNING_KEY"] = _tlog_signing_key(config["TLOG_SIGNING_KEY"], origin)
    elif config["DATABASE_URL"].startswith("sqlite"):
        # the embedded default is one host: it integrates the log itself with a key of its own
        config["TLOG_SIGNING_KEY"] = _tlog_signing_key(_instance_tlog_key(instance, origin), origin)
    if not config.get("SNAPSHOT_SIGNING_KEY"):
        config["SNAPSHOT_SIGNING_KEY"] = _instance_snapshot_key(instance)
    return config


def _private_folders(*folders: Path) -> None:
    """Whatever this process creates is its own (umask 077: database, uploads, attachments, Bloom
    shards, the secret key), and the instance and files folders are closed to other users, which
    also covers files an older version left world-readable."""
    os.umask(0o077)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            if folder.stat().st_mode & 0o077:
                folder.chmod(0o700)
        except OSError:  # a folder of another owner (a shared volume): its owner decides
            pass


def _instance_snapshot_key(instance: Path) -> str:
    """The embedded snapshot signing key: an Ed25519 key made once into the instance folder (mode
    0600), never into the database. Every host of a deployment needs the same key: set
    SNAPSHOT_SIGNING_KEY there."""
    from registry.bloom.snapshot import new_signing_key_pem

    return _instance_key(instance, "snapshot_signing_key.pem", new_signing_key_pem)


def _instance_secret(instance: Path) -> str:
    """A random key kept in the instance folder, so the embedded mode needs no setup."""
    import secrets

    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def _instance_tlog_key(instance: Path, origin: str) -> str:
    """The embedded default's log signing key, generated once into the instance folder (0600).
    Never in the database: whoever holds it can sign checkpoints (docs/transparency.md, escrow)."""
    from registry.tlog.note import Signer

    return _instance_key(instance, f"tlog_signing_key.{origin.replace('/', '_')}",
                         lambda: Signer.generate(origin).text() + "\n")


def _instance_key(instance: Path, name: str, make) -> str:
    """The key kept in ``instance/name``, made by ``make()`` the first time (mode 0600, written whole
    or not at all: another process of this host may make it first, and then its key is kept)."""
    import tempfile

    path = instance / name
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd, draft = tempfile.mkstemp(dir=instance, prefix=f".{name}-")  # 0600
        with os.fdopen(fd, "w") as fh:
            fh.write(make())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    return path.read_text().strip()
