"""Run Alembic migrations programmatically (``init-db``) on a given engine."""
from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from registry.infra.settings import ALEMBIC_INI, MIGRATIONS_DIR


def alembic_config() -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
