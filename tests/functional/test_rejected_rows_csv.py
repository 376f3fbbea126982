"""The rejected rows given back to an institution cannot run as formulas (issue 13, item 15)."""
from __future__ import annotations

import csv
import io

from tests.functional.test_institution_portal import (  # noqa: F401 - fixtures
    confirm,
    portal_app,
    preg,
    signed_in,
    upload_file,
)

EVIL = "=cmd|' /C calc'!A0"


def test_formula_rows_come_back_neutralised(portal_app, preg):  # noqa: F811
    client, _ = signed_in(portal_app, preg)
    data = "报告编号\nWT2026-0001\n=cmd|' /C calc'!A0\n@SUM(1+1)\n".encode()
    response = upload_file(client, data)
    response = confirm(client, response.headers["Location"])
    batch_url = response.headers["Location"]
    with client.get(f"{batch_url}/rejected.csv") as download:
        assert download.status_code == 200
        rows = list(csv.reader(io.StringIO(download.get_data().decode("utf-8-sig"))))
    values = [row[2] for row in rows[1:]]
    assert values == ["'" + EVIL, "'@SUM(1+1)"]
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


def test_the_cli_file_is_neutralised_too(tmp_path):
    from importers.errors import RowProblem
    from workflows.problems import write_rejected_csv

    path = tmp_path / "rejected.csv"
    write_rejected_csv(path, [RowProblem(3, None, EVIL, "bad_character", "-x", "+y")])
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1] == ["3", "", "'" + EVIL, "bad_character", "'-x", "'+y"]
