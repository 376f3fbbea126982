"""The access log of `make run` keeps no client address, query string or path secret; database
errors quote no parameters (issue 13, item 18)."""
from __future__ import annotations

import datetime as dt
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from sqlalchemy import text

from portal.accesslog import ACCESS_LOG_FORMAT, RedactingLogger
from registry.infra.db import make_engine

ROOT = Path(__file__).resolve().parents[2]


def make_run_command() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    fmt = re.search(r"^ACCESS_LOG_FORMAT := (.+)$", makefile, re.M).group(1)
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    recipe = recipe.replace("\\\n", " ").replace("$(ACCESS_LOG_FORMAT)", fmt)
    return shlex.split(recipe)


def test_make_run_uses_the_redacting_logger_and_format():
    args = make_run_command()
    assert args[args.index("--access-logformat") + 1] == ACCESS_LOG_FORMAT
    assert args[args.index("--logger-class") + 1] == "portal.accesslog.RedactingLogger"
    for atom in ("%(h)s", "%(r)s", "%(q)s", "%(a)s", "%(f)s", "{"):
        assert atom not in ACCESS_LOG_FORMAT


@pytest.mark.parametrize(("path", "logged"), [
    ("/complaints/ABCD-EFGH-JKMN", "/complaints/-"),
    ("/complaints/ABCD-EFGH-JKMN/answer", "/complaints/-/answer"),
    ("/complaints/new", "/complaints/new"),
    ("/v/91440101MA5CXXXX0X/WT2026-0001", "/v/-"),
    ("/api/v1/verify", "/api/v1/verify"),
])
def test_a_logged_request(capsys, path, logged):
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", '%(h)s %(q)s %(r)s %(a)s "%(m)s %(U)s" %(s)s')
    logger = RedactingLogger(cfg)
    environ = {"REMOTE_ADDR": "203.0.113.9", "REQUEST_METHOD": "GET", "RAW_URI": path + "?number=SECRET-1",
               "PATH_INFO": path, "QUERY_STRING": "number=SECRET-1", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_USER_AGENT": "agent-x"}
    resp = SimpleNamespace(status="200 OK", sent=10, headers=[])
    logger.access(resp, SimpleNamespace(headers=[("X-Forwarded-For", "198.51.100.7")]), environ,
                  dt.timedelta(milliseconds=3))
    line = capsys.readouterr().out
    assert f'"GET {logged}" 200' in line
    for secret in ("203.0.113.9", "SECRET-1", "agent-x", "198.51.100.7", "ABCD", "WT2026"):
        assert secret not in line


def test_database_errors_quote_no_parameters(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(Exception) as failed:
        with engine.connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table WHERE name = :name"), {"name": "张三 13800138000"})
    assert "13800138000" not in str(failed.value)
    engine.dispose()
