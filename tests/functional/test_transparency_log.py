"""The transparency log over HTTP (docs/contract.md, "The transparency log"): checkpoints, keys,
proofs and entries; ``/api/v1/verify?…&proof=1`` checked by the standalone verifier
(tools/tlog_verify.py), which also demands consistency between checkpoints. Both stacks."""
from __future__ import annotations

import base64
import importlib.util
import json

import pytest

from registry.infra.settings import ROOT
from tests.builders import make_institution, register

spec = importlib.util.spec_from_file_location("tlog_verify", ROOT / "tools" / "tlog_verify.py")
tlog_verify = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tlog_verify)

VERIFY_KEYS = {"number", "status", "institution", "institution_resolved", "quarter", "registered_at", "withdrawn_at",
               "candidates", "pending_since", "pending_until", "checked_at"}


@pytest.fixture
def world(reg):
    with reg.sessions() as s:
        a = make_institution(s, name="上海市产品质量检验所", province="09")
        b = make_institution(s, name="广州市环境监测有限公司", province="19")
        labs = {"a": (a.id, a.uscc), "b": (b.id, b.uscc)}
    register(reg, a, ["WT2020-000123", "SHARED-1"] + [f"A-{i}" for i in range(20)])
    register(reg, b, ["SHARED-1", "B-1"])
    reg.registration.withdraw(institution_id=b.id, items=[(1, "B-1", "作废")])
    reg.tlog.integrate()
    return labs


def key_of(client) -> tuple:
    response = client.get("/log/key")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/plain; charset=utf-8"
    return tlog_verify.read_verifier_key(response.get_data(as_text=True).split("\n")[0])


def test_checkpoint_key_proofs_and_entries(client, world, reg):
    response = client.get("/log/checkpoint")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    note = response.get_data(as_text=True)
    assert note.startswith("registry.localhost/tlog\n25\n") and "\n\n\u2014 registry.localhost/tlog " in note
    origin, size, root = tlog_verify.open_checkpoint(note, key_of(client))
    assert (origin, size) == ("registry.localhost/tlog", 25)

    entries = client.get("/log/entries", query_string={"start": 0, "end": 25}).get_json()["entries"]
    assert [e["leaf_index"] for e in entries] == list(range(25))
    for item in entries:
        proof = client.get("/log/proof", query_string={"index": item["leaf_index"], "size": 25}).get_json()
        assert proof["leaf_index"] == item["leaf_index"] and proof["tree_size"] == 25
        leaf = __import__("hashlib").sha256(b"\x00" + item["entry"].encode()).digest()
        hashes = [base64.b64decode(h) for h in proof["inclusion"]]
        assert tlog_verify.root_from_inclusion(item["leaf_index"], 25, leaf, hashes) == root
    # the whole log reveals no number and no USCC
    text = json.dumps(entries, ensure_ascii=False)
    for secret in ["WT2020-000123", "SHARED-1", "B-1", "A-1", world["a"][1], world["b"][1]]:
        assert secret not in text
    assert {json.loads(e["entry"])["action"] for e in entries} == {"register", "withdraw"}


@pytest.mark.parametrize("path, params, status", [
    ("/log/proof", {"index": "x", "size": 3}, 400),
    ("/log/proof", {"index": 3, "size": 3}, 400),
    ("/log/proof", {"index": -1, "size": 3}, 400),
    ("/log/proof", {"size": 3}, 400),
    ("/log/proof", {"index": 0, "size": 26}, 404),
    ("/log/proof", {"index": 0, "size": 10 ** 30}, 400),
    ("/log/consistency", {"from": 0, "to": 3}, 400),
    ("/log/consistency", {"from": 4, "to": 3}, 400),
    ("/log/consistency", {"from": 3, "to": 26}, 404),
    ("/log/entries", {"start": 0, "end": 1001}, 400),
    ("/log/entries", {"start": 5, "end": 5}, 400),
    ("/log/entries", {"start": 20, "end": 30}, 404),
    ("/log/nothing", {}, 404),
])
def test_bad_ranges_answer_in_the_api_error_shape(client, world, path, params, status):
    response = client.get(path, query_string=params)
    assert response.status_code == status
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == ("invalid_request" if status == 400 else "not_found")


def test_before_any_checkpoint(client):
    for path in ("/log/checkpoint", "/log/key"):
        response = client.get(path)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_consistency_between_checkpoints(client, world, reg):
    key = key_of(client)
    _, old_size, old_root = tlog_verify.open_checkpoint(client.get("/log/checkpoint").get_data(as_text=True), key)
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, [f"LATER-{i}" for i in range(300)])
    reg.tlog.integrate()
    _, size, root = tlog_verify.open_checkpoint(client.get("/log/checkpoint").get_data(as_text=True), key)
    assert size == old_size + 300
    for old in (1, 2, old_size, 100, size):
        proof = client.get("/log/consistency", query_string={"from": old, "to": size}).get_json()["consistency"]
        if old == old_size:
            tlog_verify.check_consistency(old, size, old_root, root, [base64.b64decode(h) for h in proof])
        assert (proof == []) == (old == size)


def test_verify_with_proof_checked_by_the_standalone_verifier(client, world, reg, tmp_path):
    key = client.get("/log/key").get_data(as_text=True).split("\n")[0]
    plain = client.get("/api/v1/verify", query_string={"number": "WT2020-000123"}).get_json()
    assert set(plain) == VERIFY_KEYS
    assert set(client.get("/api/v1/verify", query_string={"number": "WT2020-000123", "proof": "0"}).get_json()) \
        == VERIFY_KEYS
    body = client.get("/api/v1/verify", query_string={"number": "WT2020-000123", "proof": 1}).get_json()
    assert set(body) == VERIFY_KEYS | {"log"}
    assert set(body["log"]) == {"checkpoint", "entries"}
    [item] = body["log"]["entries"]
    assert set(item) == {"entry", "leaf_index", "inclusion", "uscc", "number", "salt", "sha256"}
    assert item["uscc"] == world["a"][1] and item["sha256"] is None and len(base64.b64decode(item["salt"])) == 16
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps(body), encoding="utf-8")
    state = tmp_path / "state.json"
    assert tlog_verify.main(["--key", key, "--answer", str(answer), "--state", str(state)]) == 0

    # another import, a new checkpoint: the verifier demands the consistency proof, and accepts it
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, [f"NEXT-{i}" for i in range(40)])
    reg.tlog.integrate()
    later = client.get("/api/v1/verify", query_string={"number": "WT2020-000123", "proof": 1}).get_json()
    answer.write_text(json.dumps(later), encoding="utf-8")
    assert tlog_verify.main(["--key", key, "--answer", str(answer), "--state", str(state)]) == 1  # no proof given
    old_size = json.loads(state.read_text())["size"]
    new_size = int(later["log"]["checkpoint"].split("\n")[1])
    proof = client.get("/log/consistency", query_string={"from": old_size, "to": new_size}).get_json()
    (tmp_path / "consistency.json").write_text(json.dumps(proof))
    assert tlog_verify.main(["--key", key, "--answer", str(answer), "--state", str(state),
                             "--consistency", str(tmp_path / "consistency.json")]) == 0
    assert json.loads(state.read_text())["size"] == new_size


def test_which_registrations_an_answer_shows(client, world, reg):
    a_id, a_uscc = world["a"]
    b_id, b_uscc = world["b"]
    ambiguous = client.get("/api/v1/verify", query_string={"number": "SHARED-1", "proof": 1}).get_json()
    assert ambiguous["status"] == "ambiguous"
    assert sorted(e["uscc"] for e in ambiguous["log"]["entries"]) == sorted([a_uscc, b_uscc])
    withdrawn = client.get("/api/v1/verify", query_string={"number": "B-1", "proof": 1}).get_json()
    assert [json.loads(e["entry"])["action"] for e in withdrawn["log"]["entries"]] == ["register", "withdraw"]
    assert len({e["salt"] for e in withdrawn["log"]["entries"]}) == 1
    # a mismatch never names the registrant, not even through the log
    mismatch = client.get("/api/v1/verify", query_string={"number": "B-1", "institution": a_uscc, "proof": 1}).get_json()
    assert mismatch["status"] == "mismatch" and mismatch["log"]["entries"] == []
    assert b_uscc not in json.dumps(mismatch)
    missing = client.get("/api/v1/verify", query_string={"number": "NOPE-1", "proof": 1}).get_json()
    assert missing["status"] == "not_found" and missing["log"]["entries"] == []
    # registered but not yet integrated: listed as pending, no proof; the verifier says so
    with reg.sessions() as s:
        lab = make_institution(s)
    register(reg, lab, ["FRESH-1"])
    fresh = client.get("/api/v1/verify", query_string={"number": "FRESH-1", "proof": 1}).get_json()
    [item] = fresh["log"]["entries"]
    assert item["pending"] is True and "inclusion" not in item and "leaf_index" not in item
    key = tlog_verify.read_verifier_key(client.get("/log/key").get_data(as_text=True))
    _, report = tlog_verify.check_answer(fresh, key)
    assert report[-1].startswith("pending")
    bad = client.get("/api/v1/verify", query_string={"number": "FRESH-1", "proof": "yes"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_request"


def test_a_forged_entry_fails_the_standalone_verifier(client, world):
    key = tlog_verify.read_verifier_key(client.get("/log/key").get_data(as_text=True))
    body = client.get("/api/v1/verify", query_string={"number": "WT2020-000123", "proof": 1}).get_json()
    tlog_verify.check_answer(body, key)
    forged = json.loads(json.dumps(body))
    item = forged["log"]["entries"][0]
    entry = json.loads(item["entry"])
    entry["at"] = "2020-01-01T00:00:00+08:00"  # back-dated
    item["entry"] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    with pytest.raises(tlog_verify.Failed, match="not included"):
        tlog_verify.check_answer(forged, key)
    other = json.loads(json.dumps(body))
    other["log"]["entries"][0]["number"] = other["number"] = "WT2020-000124"  # another number, same entry
    with pytest.raises(tlog_verify.Failed, match="commitment"):
        tlog_verify.check_answer(other, key)
    resigned = json.loads(json.dumps(body))
    resigned["log"]["checkpoint"] = resigned["log"]["checkpoint"].replace("\n25\n", "\n26\n")
    with pytest.raises(tlog_verify.Failed, match="signature"):
        tlog_verify.check_answer(resigned, key)


def test_log_routes_are_rate_limited(stack):
    from portal import create_app

    app = create_app({**stack, "RATELIMIT_LOG": "2/minute"})
    try:
        client = app.test_client()
        statuses = [client.get("/log/entries", query_string={"start": 0, "end": 1}).status_code for _ in range(3)]
        assert statuses[:2] == [404, 404] and statuses[2] == 429
        assert client.get("/log/checkpoint").get_json()["error"]["code"] == "rate_limited"
    finally:
        app.extensions["registry"].close()


def test_cli_import_checked_by_the_standalone_script_in_its_own_interpreter(runner, client, reg, tmp_path):
    """The issue's independent check end to end: numbers imported through the CLI, integrated by
    `tlog integrate`, the verify answer with proof=1 checked by tools/tlog_verify.py run as its own
    program (isolated mode: the standard library and cryptography, not the repository), then a
    consistency proof demanded and given after another import."""
    import subprocess
    import sys

    with reg.sessions() as s:
        lab = make_institution(s)
    csv = tmp_path / "q3.csv"
    csv.write_text("报告编号\nCLI2026-0001~CLI2026-0010\n", encoding="utf-8")
    assert runner.invoke(args=["import-numbers", str(csv), "--institution", lab.uscc, "--quarter", "2026Q3"]).exit_code == 0
    assert runner.invoke(args=["tlog", "integrate"]).exit_code == 0
    key = client.get("/log/key").get_data(as_text=True).split("\n")[0]
    (tmp_path / "key.txt").write_text(key + "\n")
    script = str(ROOT / "tools" / "tlog_verify.py")

    def check(*extra):
        answer = client.get("/api/v1/verify", query_string={"number": "CLI2026-0007", "proof": 1}).get_json()
        (tmp_path / "answer.json").write_text(json.dumps(answer), encoding="utf-8")
        return subprocess.run([sys.executable, "-I", script, "--key", f"@{tmp_path / 'key.txt'}", "--answer",
                               str(tmp_path / "answer.json"), "--state", str(tmp_path / "state.json"), *extra],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)

    first = check()
    assert first.returncode == 0 and "verified" in first.stdout and "included at" in first.stdout, first.stderr
    csv.write_text("报告编号\nCLI2026-0011~CLI2026-0030\n", encoding="utf-8")
    assert runner.invoke(args=["import-numbers", str(csv), "--institution", lab.uscc, "--quarter", "2026Q3"]).exit_code == 0
    assert runner.invoke(args=["tlog", "integrate"]).exit_code == 0
    refused = check()
    assert refused.returncode == 1 and "consistency proof from size 10 to 30 is needed" in refused.stderr
    proof = client.get("/log/consistency", query_string={"from": 10, "to": 30}).get_json()
    (tmp_path / "consistency.json").write_text(json.dumps(proof))
    assert check("--consistency", str(tmp_path / "consistency.json")).returncode == 0
    forged = json.loads(json.dumps(proof))
    forged["consistency"][0] = base64.b64encode(bytes(32)).decode()
    (tmp_path / "state.json").write_text(json.dumps({"origin": "registry.localhost/tlog", "size": 10,
                                                     "root": base64.b64encode(bytes(32)).decode()}))
    (tmp_path / "consistency.json").write_text(json.dumps(forged))
    bad = check("--consistency", str(tmp_path / "consistency.json"))
    assert bad.returncode == 1 and "does not extend" in bad.stderr
