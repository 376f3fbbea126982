"""The baseline of bench/verify: a bare Flask JSON endpoint at the same path, no registry."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/api/v1/verify")
def verify():
    return jsonify({
        "number": request.args.get("number", ""), "status": "not_found", "institution": None,
        "institution_resolved": None, "quarter": None, "registered_at": None, "withdrawn_at": None,
        "candidates": [], "pending_since": "2026-10-01", "pending_until": "2027-01-31",
        "checked_at": "2026-11-23T20:15:03+08:00",
    })
