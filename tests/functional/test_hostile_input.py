"""Hostile input at the edge answers 4xx (or is cleaned), never a 500 (issue 13, items 2 and 19)."""
from __future__ import annotations

import logging

import pytest

from tests.functional.test_complaints import app, stored, submit  # noqa: F401 - app is a fixture

FIELDS = ["number", "institution", "description", "name", "contact"]


@pytest.fixture
def client(app):  # noqa: F811
    return app.test_client()


@pytest.mark.parametrize("field", FIELDS)
def test_a_nul_in_any_complaint_field_is_no_500_and_leaks_nothing(app, client, caplog, field):  # noqa: F811
    value = {"number": "WT2026-\x000001", "institution": "某\x00机构", "description": "描述\x00内容\x07足够长",
             "name": "张\x00三丰", "contact": "1380013\x008000"}[field]
    with caplog.at_level(logging.DEBUG):
        response = submit(client, **{field: value, "name": "李四光" if field != "name" else value,
                                     "contact": "13912345678" if field != "contact" else value})
    assert response.status_code in (303, 400)
    assert "李四光" not in caplog.text and "13912345678" not in caplog.text
    assert "三丰" not in caplog.text and "8000" not in caplog.text
    for complaint in stored(app.extensions["registry"]):
        for text in (complaint.number, complaint.institution_text, complaint.description,
                     complaint.complainant_name, complaint.complainant_contact):
            assert "\x00" not in (text or "") and "\x07" not in (text or "")


def test_a_nul_in_the_complainants_answer(app, client):  # noqa: F811
    response = client.post("/complaints/ABCD-EFGH-JKMN/answer", data={"answer": "a\x00b"})
    assert response.status_code in (303, 400, 404)


def test_verify_with_a_nul_in_the_institution_is_logged(app, client):  # noqa: F811
    reg = app.extensions["registry"]
    response = client.get("/api/v1/verify?number=X1&institution=a%00b")
    assert response.status_code == 200
    assert reg.query_log.flush() >= 1
    client.get("/api/v1/verify?number=X2")
    assert reg.query_log.flush() == 1 and len(reg.query_log) == 0


def test_control_characters_in_query_or_form_of_a_page_are_a_400(app, client):  # noqa: F811
    assert client.get("/complaints/new?number=a%00b").status_code == 400
    assert client.get("/complaints/new?number=a%1Bb").status_code == 400
    assert client.get("/complaints/new?number=a%0Ab").status_code == 200  # a line break is text
    assert client.get("/login?next=%00").status_code in (400, 404)


def test_complaint_form_filters_clean_what_they_take(app):  # noqa: F811
    from portal.forms import ComplaintForm

    with app.test_request_context(method="POST", data={"name": "张\x00三 ", "description": " a\x00\r\nb\tc\x07 "}):
        form = ComplaintForm(meta={"csrf": False})
        assert form.name.data == "张三" and form.description.data == "a\nb\tc"
