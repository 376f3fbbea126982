"""tools/snapshot_client.py end to end, as a platform runs it, against the real server (gunicorn,
two workers) on both stacks: numbers registered before the snapshot are possible hits, absent
ones "not registered as of <time>", numbers registered later appear once the deltas are applied,
and a snapshot altered on its way (a man in the middle) or signed with another key is refused,
leaving the local copy as it was."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.builders import make_institution, register
from tests.e2e.live import live_server

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "tools" / "snapshot_client.py"
BIN = Path(sys.executable).parent


@pytest.fixture
def served(stack, tmp_path):
    """The registry served by gunicorn (two workers) and the same registry in this process, for
    registering numbers as an institution would; both on the stack's database and store."""
    from bench.common import free_port, wait_http
    from portal import create_app

    env = {**os.environ, "INSTANCE_DIR": stack["INSTANCE_DIR"], "DATABASE_URL": stack["DATABASE_URL"],
           "REDIS_URL": stack["REDIS_URL"], "SECRET_KEY": stack["SECRET_KEY"], "AUDIT_KEY": stack["AUDIT_KEY"],
           "BACKGROUND_INTERVAL": "0", "BLOOM_CAPACITY": str(stack["BLOOM_CAPACITY"]),
           "BLOOM_SHARDS": str(stack["BLOOM_SHARDS"])}
    if stack["STACK"] == "sqlite-local":
        subprocess.run([str(BIN / "flask"), "--app", "wsgi", "init-db"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
    app = create_app(stack)
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted()
    port = free_port()
    server = subprocess.Popen([str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}", reg, env
    finally:
        server.terminate()
        server.wait(timeout=30)
        reg.close()


def run_client(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The client as a platform runs it: its own interpreter, nothing of the registry imported."""
    return subprocess.run([sys.executable, str(CLIENT), *args], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in (env or os.environ).items() if k != "PYTHONPATH"}, cwd="/")


def answers(result) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in result.stdout.splitlines())


def test_the_client_downloads_checks_updates_and_refuses_tampering(served, tmp_path):
    base, reg, env = served
    with reg.sessions() as session:
        lab = make_institution(session)
        session.expunge(lab)
    register(reg, lab, ["BEFORE-0001", "before—0002", "国环测〔2021〕第045号"])
    _, key = reg.platforms.create(name="某电商平台", per_minute=100, per_day=1000)
    state = tmp_path / "state"
    common = ["--base", base, "--key", key, "--state", str(state)]

    assert run_client("--base", base, "--state", str(state), "download").returncode == 2  # no key: 401
    downloaded = run_client(*common, "download")
    assert downloaded.returncode == 0, downloaded.stderr
    manifest = json.loads((state / "snapshot.json").read_text())
    as_of = manifest["as_of"]
    assert f"as of {as_of}" in downloaded.stdout

    checked = run_client("--state", str(state), "check", "BEFORE-0001", "before-0002", "国环测(2021)第045号",
                         "NEVER-0001", "AFTER-0001")
    assert checked.returncode == 1  # at least one possible hit
    got = answers(checked)
    for number in ("BEFORE-0001", "before-0002", "国环测(2021)第045号"):
        assert got[number] == "possible hit — confirm via the API", number
    assert got["NEVER-0001"] == f"not registered as of {as_of}"
    assert run_client("--state", str(state), "check", "NEVER-0002").returncode == 0

    # registered after the snapshot: not in it, until the deltas are applied
    register(reg, lab, ["AFTER-0001", "AFTER-0002"])
    assert answers(run_client("--state", str(state), "check", "AFTER-0001"))["AFTER-0001"].startswith("not registered")
    taken = subprocess.run([str(BIN / "flask"), "--app", "wsgi", "bloom", "snapshot"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert taken.returncode == 0 and "seq=1" in taken.stdout, taken.stderr
    updated = run_client(*common, "update")
    assert updated.returncode == 0 and "bits set" in updated.stdout, updated.stderr
    newer = json.loads((state / "snapshot.json").read_text())
    assert newer["seq"] == 1 and newer["as_of"] >= as_of
    got = answers(run_client("--state", str(state), "check", "AFTER-0001", "after-0002", "NEVER-0001"))
    assert got["AFTER-0001"] == got["after-0002"] == "possible hit — confirm via the API"
    assert got["NEVER-0001"] == f"not registered as of {newer['as_of']}"

    # a man in the middle who moves "as of" forward: the signature no longer verifies
    def tampering(environ, start_response):
        request = urllib.request.Request(base + environ["PATH_INFO"] + "?" + environ.get("QUERY_STRING", ""),
                                         headers={"Authorization": environ.get("HTTP_AUTHORIZATION", "")})
        with urllib.request.urlopen(request) as response:
            body = response.read()
        if environ["PATH_INFO"] == "/api/v1/snapshot":
            body = body.replace(b'"as_of":"20', b'"as_of":"21', 1)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
        return [body]

    before = (state / "snapshot.json").read_bytes(), (state / "shard-0.bits").read_bytes()
    with live_server(tampering, "tampering-proxy") as proxy:
        refused = run_client("--base", proxy, "--key", key, "--state", str(state), "download")
    assert refused.returncode == 2 and "signature does not verify" in refused.stderr, refused.stderr
    assert ((state / "snapshot.json").read_bytes(), (state / "shard-0.bits").read_bytes()) == before
    # a key pinned out of band that is not the registry's: refused too
    other = tmp_path / "other.pub"
    other.write_text(base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode())
    wrong = run_client(*common, "--public-key", str(other), "download")
    assert wrong.returncode == 2 and "signature does not verify" in wrong.stderr, wrong.stderr
    # the registry's own key, pinned out of band, works
    pinned = tmp_path / "registry.pub"
    pinned.write_text(json.loads(urllib.request.urlopen(base + "/api/v1/snapshot/key").read())["public_key"])
    assert run_client(*common, "--public-key", str(pinned), "download").returncode == 0
