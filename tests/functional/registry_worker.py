"""A second process sharing the test's database and Bloom store, driven by JSON lines on stdin.

Used by the no-false-negative tests: each command is applied through the real app's registry
(`register`, `withdraw`, `verify`, `rebuild`) and answered with one JSON line.
"""
from __future__ import annotations

import hashlib
import json
import sys


def main() -> None:
    config = json.loads(sys.argv[1])
    from portal import create_app
    from registry.numbers.quarters import Quarter

    app = create_app(config)
    reg = app.extensions["registry"]
    reg.wait_until_trusted()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "register":
            digest = hashlib.sha256(json.dumps(cmd).encode()).hexdigest()
            reg.registration.register(institution_id=cmd["institution_id"], quarter=Quarter.parse("2026Q3"),
                                      numbers=cmd["numbers"], sha256=digest, source="api")
            out = {"ok": True}
        elif op == "withdraw":
            reg.registration.withdraw(institution_id=cmd["institution_id"], items=[(None, cmd["number"], "void")])
            out = {"ok": True}
        elif op == "verify":
            reg.refresh(auto_rebuild=False)
            out = {"status": reg.verifier.verify(cmd["number"]).status, "mode": reg.bloom.status()["mode"]}
        elif op == "rebuild":
            reg.bloom.rebuild()
            out = {"ok": True}
        elif op == "quit":
            break
        else:
            out = {"error": op}
        print(json.dumps(out), flush=True)
    reg.close()


if __name__ == "__main__":
    main()
