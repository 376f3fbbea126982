"""The baselines of bench/verify: a bare Flask JSON endpoint at the same path, no registry.

``app`` is the headline baseline. ``app_with_headers`` answers the same with the headers the
contract puts on every verify answer (the security headers, ``Cache-Control``, three
``X-RateLimit-*``): it explains how much of the difference those headers alone cost."""
from flask import Flask, jsonify, request

from portal.security import SECURITY_HEADERS

BODY = {
    "status": "not_found", "institution": None, "institution_resolved": None, "quarter": None,
    "registered_at": None, "withdrawn_at": None, "candidates": [], "pending_since": "2026-10-01",
    "pending_until": "2027-01-31", "checked_at": "2026-11-23T20:15:03+08:00",
}
CONTRACT_HEADERS = [*SECURITY_HEADERS, ("Cache-Control", "no-store"), ("X-RateLimit-Limit", "100000000"),
                    ("X-RateLimit-Remaining", "99999999"), ("X-RateLimit-Reset", "1796106649")]

app = Flask(__name__)


@app.get("/api/v1/verify")
def verify():
    return jsonify({"number": request.args.get("number", ""), **BODY})


app_with_headers = Flask(__name__)


@app_with_headers.get("/api/v1/verify")
def verify_with_headers():
    response = jsonify({"number": request.args.get("number", ""), **BODY})
    response.headers.extend(CONTRACT_HEADERS)
    return response
