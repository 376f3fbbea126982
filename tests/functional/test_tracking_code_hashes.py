"""Tracking codes are the complainants' bearer secrets (issue 13, item 17): the database keeps only
their SHA-256; the status page, the tracking form and an officer's search find a complaint by the
hash of the code typed; officers see the complaint's reference (TS-<year>-<id>) — in the queue,
on the trail page and in the export — never the code."""
from __future__ import annotations

import csv
import io

from sqlalchemy import String, Text, inspect, select, text

from registry.complaints.models import Complaint
from registry.complaints.service import hash_tracking_code, normalize_tracking_code, parse_reference
from registry.infra.base import Base
from tests.functional.regulator_helpers import (  # noqa: F401 - fixtures
    complaint, institution, officer_client, rapp, rreg)
from tests.functional.test_regulator import file_public_complaint


def _text_values(reg) -> list[str]:
    """Every text value of every table (also tables the models do not map)."""
    values = []
    with reg.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            columns = [c["name"] for c in inspect(connection).get_columns(table)
                       if isinstance(c["type"], (String, Text)) or "CHAR" in str(c["type"]).upper()
                       or "TEXT" in str(c["type"]).upper() or "JSON" in str(c["type"]).upper()]
            for column in columns:
                values += [str(v) for (v,) in connection.execute(text(f'SELECT "{column}" FROM "{table}"'))
                           if v is not None]
    return values


def test_the_database_holds_no_plain_tracking_code(rapp, rreg):
    institution(rreg, province="15", name="山东查询码检测公司")
    status_url = file_public_complaint(rapp.test_client(), institution="山东查询码检测公司")
    shown = status_url.rsplit("/", 1)[1]
    code = normalize_tracking_code(shown)
    assert code and len(code) == 16
    values = _text_values(rreg)
    assert values and not any(code in v or shown in v or code.lower() in v for v in values)
    assert "tracking_code" not in {c.name for c in Base.metadata.tables["complaints"].columns}
    with rreg.sessions() as s:
        row = s.scalar(select(Complaint))
    assert row.tracking_hash == hash_tracking_code(code)
    # the code still opens the status page, however it is typed
    public = rapp.test_client()
    assert public.get(status_url).status_code == 200
    assert public.get(f"/complaints/{code.lower()}").status_code == 200
    assert public.get("/complaints/AAAA-BBBB-CCCC-DDDD").status_code == 404


def test_officers_see_and_search_references_not_codes(rapp, rreg):
    institution(rreg, province="15", name="山东编号检测公司")
    status_url = file_public_complaint(rapp.test_client(), number="SD-REF", institution="山东编号检测公司")
    shown = status_url.rsplit("/", 1)[1]
    other = complaint(rreg, province="15", number="SD-OTHER")
    with rreg.sessions() as s:
        row = s.scalar(select(Complaint).where(Complaint.number == "SD-REF"))
        reference = row.reference
    assert reference.startswith("TS-20") and reference.endswith(f"-{row.id:06d}")
    assert parse_reference(reference.lower()) == (int(reference[3:7]), row.id)
    client = officer_client(rapp, rreg, "15")
    queue = client.get("/regulator/complaints?status=all").get_data(as_text=True)
    assert reference in queue and shown not in queue
    trail = client.get(f"/regulator/complaints/{row.id}").get_data(as_text=True)
    assert f'id="complaint-reference">{reference}<' in trail and shown not in trail
    # search by reference (case and dashes as typed), or by a code a complainant read out
    for query in (reference, reference.lower(), reference.replace("-", ""), shown, shown.replace("-", "").lower()):
        found = client.get("/regulator/complaints", query_string={"status": "all", "q": query}).get_data(as_text=True)
        assert "SD-REF" in found and "SD-OTHER" not in found, query
    wrong_year = f"TS-1999-{row.id:06d}"
    assert "SD-REF" not in client.get("/regulator/complaints", query_string={"status": "all", "q": wrong_year}
                                      ).get_data(as_text=True)
    # the export's first column is the reference (it was the tracking code)
    with client.get("/regulator/complaints.csv?status=all") as response:
        rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"), newline="")))
    assert rows[0][0] == "reference"
    assert {r[0] for r in rows[1:]} == {reference, other.reference}
    assert shown not in response.data.decode("utf-8-sig")
