"""Lists that grow with the country have search and paging (issue 19, part 5): a bounded page
size, page links keeping the search and filters, the total; a bad page is a 400, a page past the
end shows the last one."""
from __future__ import annotations

import re

from tests.functional.regulator_helpers import (  # noqa: F401
    complaint, institution, make_account, officer_client, rapp, rreg, sign_in,
)


def links(html: str) -> list[str]:
    nav = re.search(r'<nav class="paging".*?</nav>', html, re.S)
    return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', nav.group(0))] if nav else []


def test_admin_accounts_are_searched_and_paged(rapp, rreg):
    lab = institution(rreg, province="15", name="分页测试检测有限公司")
    for n in range(60):
        make_account(rreg, "institution", institution=lab, username=f"lab-user-{n:03d}")
    admin = sign_in(rapp, rreg, "admin")
    html = admin.get("/admin/").get_data(as_text=True)
    assert html.count('data-label="用户名"') == 50
    total = re.search(r'共 (\d+) 条', html)
    assert total and int(total.group(1)) >= 61
    assert "/admin/?page=2" in links(html)
    page2 = admin.get("/admin/?page=2").get_data(as_text=True)
    assert 'aria-current="page">2<' in page2 and "/admin/" in links(page2)

    found = admin.get("/admin/?q=lab-user-0").get_data(as_text=True)
    assert "共 60 条，显示第 1–50 条" in found
    assert all("q=lab-user-0" in link for link in links(found)) and links(found)
    assert 'value="lab-user-0"' in found
    assert "共 10 条" in admin.get("/admin/?q=lab-user-01").get_data(as_text=True)
    by_institution = admin.get("/admin/?q=分页测试").get_data(as_text=True)
    assert "共 60 条" in by_institution
    assert "没有符合条件的记录" in admin.get("/admin/?q=nobody-at-all").get_data(as_text=True)
    assert "lab-user-059" in admin.get("/admin/?q=lab-user&page=99").get_data(as_text=True)  # the last page
    assert admin.get("/admin/?page=abc").status_code == 400
    assert admin.get("/admin/?page=0").status_code == 400
    assert "%" not in admin.get("/admin/?q=%25").get_data(as_text=True).split("list-total")[1][:40]


def test_the_complaint_queue_is_paged_with_its_filters_kept(rapp, rreg):
    for n in range(57):
        complaint(rreg, province="15", number=f"PAGE-{n:03d}")
    officer = officer_client(rapp, rreg, "15")
    html = officer.get("/regulator/complaints?status=all&category=not_found").get_data(as_text=True)
    assert html.count('class="queue-item') == 50 and "共 57 件" in html
    nav = links(html)
    assert nav and all("status=all" in link and "category=not_found" in link for link in nav)
    page2 = officer.get("/regulator/complaints?status=all&category=not_found&page=2").get_data(as_text=True)
    assert page2.count('class="queue-item') == 7
    # the exports hold every complaint, whatever page is shown
    csv = officer.get("/regulator/complaints.csv?status=all&page=2").get_data(as_text=True)
    assert csv.count("PAGE-") == 57
    assert officer.get("/regulator/complaints?page=-1").status_code == 400


def test_compliance_and_institutions_are_searchable(rapp, rreg):
    for n in range(3):
        institution(rreg, province="15", name=f"搜索样本检测{n}号公司")
    institution(rreg, province="15", name="无关的计量所")
    officer = officer_client(rapp, rreg, "15")
    html = officer.get("/regulator/compliance?quarter=2026Q3&q=搜索样本").get_data(as_text=True)
    assert "搜索样本检测0号公司" in html and "无关的计量所" not in html and "共 3 条" in html
    assert 'data-label="机构"' in html
    html = officer.get("/regulator/institutions?q=搜索样本").get_data(as_text=True)
    assert "共 3 条" in html and "搜索样本检测2号公司" in html
    assert "没有符合条件的记录" in officer_client(rapp, rreg, "19").get(
        "/regulator/institutions?q=搜索样本").get_data(as_text=True)
