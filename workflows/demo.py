"""Demo data that looks real: institutions in every province, certificates, report numbers in the
formats labs really use, several quarters, withdrawals, shared numbers, an abnormal and a renamed
institution. Deterministic (seeded), so the same command gives the same registry."""
from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass

from sqlalchemy import select

from registry.institutions.authorities import PROVINCES, seed_authorities
from registry.institutions.directory import bump_directory_version
from registry.institutions.service import create_institution, rename_institution
from registry.institutions.models import Authority, Certificate, CertificateEvent, Institution, InstitutionAddress
from registry.registration.models import Batch
from registry.infra.settings import DEMO_REPORT
from registry.numbers.normalize import USCC_CHARSET, make_uscc, normalize_number
from registry.numbers.quarters import REPORTING_BEGAN, SHANGHAI, Quarter
from registry.registration.service import RegistrationService

CITY = {
    "01": ("北京", "110000"), "02": ("天津", "120000"), "03": ("石家庄", "130100"), "04": ("太原", "140100"),
    "05": ("呼和浩特", "150100"), "06": ("沈阳", "210100"), "07": ("长春", "220100"), "08": ("哈尔滨", "230100"),
    "09": ("上海", "310000"), "10": ("南京", "320100"), "11": ("杭州", "330100"), "12": ("合肥", "340100"),
    "13": ("福州", "350100"), "14": ("南昌", "360100"), "15": ("济南", "370100"), "16": ("郑州", "410100"),
    "17": ("武汉", "420100"), "18": ("长沙", "430100"), "19": ("广州", "440100"), "20": ("南宁", "450100"),
    "21": ("海口", "460100"), "22": ("重庆", "500000"), "23": ("成都", "510100"), "24": ("贵阳", "520100"),
    "25": ("昆明", "530100"), "26": ("拉萨", "540100"), "27": ("西安", "610100"), "28": ("兰州", "620100"),
    "29": ("西宁", "630100"), "30": ("银川", "640100"), "31": ("乌鲁木齐", "650100"),
}
ABBR = {"01": "京", "02": "津", "03": "冀", "04": "晋", "05": "蒙", "06": "辽", "07": "吉", "08": "黑", "09": "沪",
        "10": "苏", "11": "浙", "12": "皖", "13": "闽", "14": "赣", "15": "鲁", "16": "豫", "17": "鄂", "18": "湘",
        "19": "粤", "20": "桂", "21": "琼", "22": "渝", "23": "川", "24": "黔", "25": "滇", "26": "藏", "27": "陕",
        "28": "甘", "29": "青", "30": "宁", "31": "新"}
KINDS = [
    ("产品质量检验所", "QT"), ("环境监测有限公司", "HJ"), ("建设工程质量检测有限公司", "JC"), ("食品检验检测中心", "SP"),
    ("计量测试研究院", "JL"), ("机动车检测有限公司", "JD"), ("纤维检验所", "XW"), ("医疗器械检验研究院", "YL"),
]
FORMATS = ("prefix", "provincial", "document", "quarterly", "digits")

# Numbers used by two labs, to show the `ambiguous` verdict.
SHARED_NUMBERS = ("2020-0001", "BG2021-0001")
# The first lab's sample report (portal/static/demo/sample-report.pdf, made by tools/demo_report.py)
# is registered in its current quarter with the file's SHA-256, to show the document check.
SAMPLE_NUMBER = "WTYB-0001"


@dataclass
class DemoSummary:
    institutions: int
    numbers: int
    batches: int
    created: bool


def _uscc(rng: random.Random, division: str) -> str:
    body = "91" + division + "".join(rng.choice(USCC_CHARSET[:10] + "ABCDEFGHJKLMNPQRTUWXY"[:8]) for _ in range(9))
    return make_uscc(body[:17])


LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def lab_code(index: int) -> str:
    """A short code unique to each demo lab, printed in its report numbers."""
    if index == 0:
        return "WT"
    return KINDS[index % len(KINDS)][1] + LETTERS[(index // len(KINDS)) % len(LETTERS)]


def number_for(fmt: str, abbr: str, index: int, quarter: Quarter, serial: int) -> str:
    y = quarter.year
    if fmt == "prefix":
        return f"{lab_code(index)}{y}-{serial:06d}"
    if fmt == "provincial":
        return f"（{y}）{abbr}检字第{serial:04d}号"
    if fmt == "document":
        return f"{abbr}环测〔{y}〕第{serial:03d}号"
    if fmt == "quarterly":
        lab = "BG" if index == 3 else lab_code(index)
        return f"{lab}-{y}-Q{quarter.q}-{serial:04d}"
    return f"{y}{index:03d}{quarter.q}{serial:05d}"


def load_demo_data(
    session_factory, registration: RegistrationService, *, institutions: int = 40, numbers_per_quarter: int = 200,
    today: dt.date | None = None, seed: int = 20201231,
) -> DemoSummary:
    rng = random.Random(seed)
    today = today or dt.datetime.now(SHANGHAI).date()
    with session_factory() as session:
        seed_authorities(session)
        session.commit()
        if session.scalar(select(Institution.id).where(Institution.name.like("%（演示）%")).limit(1)):
            return DemoSummary(0, 0, 0, created=False)
        authorities = {a.code: a for a in session.scalars(select(Authority))}
        plan = []
        province_codes = [code for code, _, _ in PROVINCES]
        for i in range(institutions):
            code = province_codes[i % len(province_codes)]
            city, division = CITY[code]
            kind, prefix = KINDS[i % len(KINDS)]
            name = f"{city}市{kind}（演示）" if code not in ("01", "02", "09", "22") else f"{city}{kind}（演示）"
            if i >= len(province_codes):
                name = name.replace("（演示）", f"第{i // len(province_codes) + 1}分所（演示）")
            inst = create_institution(session, uscc=_uscc(rng, division), name=name, review_authority=authorities[code])
            inst.created_at = dt.datetime(2018, 6, 1, tzinfo=dt.timezone.utc)
            session.add(InstitutionAddress(institution_id=inst.id, address=f"{city}市高新区检测路{10 + i}号"))
            issued = dt.date(2021 + i % 3, 1 + i % 12, 1 + i % 27)
            cert_number = f"{issued.year % 100:02d}{code}{rng.randint(1, 9)}{rng.randint(0, 9)}{i + 1:02d}{rng.randint(0, 99):02d}"[:12].ljust(12, "0")
            status = "suspended" if i % 13 == 7 else "valid"
            cert = Certificate(number=cert_number, institution_id=inst.id, issuing_authority_id=authorities[code].id,
                               issued_on=issued, expires_on=issued.replace(year=issued.year + 6), status="valid")
            session.add(cert)
            session.flush()
            granted = dt.datetime.combine(issued, dt.time(9), tzinfo=SHANGHAI)
            session.add(CertificateEvent(certificate_id=cert.id, status="valid", changed_at=granted, source="demo"))
            if status != "valid":
                cert.status = status
                session.add(CertificateEvent(certificate_id=cert.id, status=status, source="demo"))
            plan.append((inst, code, prefix, FORMATS[i % len(FORMATS)], issued))
        # one abnormal, one renamed (its former name still resolves): the 4th and the 6th, or the
        # last ones of a smaller plan
        if len(plan) > 1:
            plan[min(3, len(plan) - 2)][0].abnormal = True
        renamed = plan[min(5, len(plan) - 1)][0]
        rename_institution(session, renamed, renamed.name.replace("（演示）", "集团有限公司（演示）"))
        bump_directory_version(session)
        session.commit()
        plan_ids = [(inst.id, code, prefix, fmt, issued) for inst, code, prefix, fmt, issued in plan]

    current = Quarter.containing(today)
    quarters = [current]
    for _ in range(5):
        quarters.insert(0, quarters[0].previous())
    total = batches = 0
    for index, (iid, code, prefix, fmt, issued) in enumerate(plan_ids):
        # the years before the six quarters shown in detail: every quarter since the lab's
        # certificate reported on time, fewer numbers each (its overview then shows a history,
        # not years of 未报送)
        history = [(quarter, max(1, numbers_per_quarter // 4)) for quarter in _quarters_before(quarters[0], since=issued)]
        for quarter, count in history + [(quarter, numbers_per_quarter) for quarter in quarters]:
            if index % 7 == 6 and quarter == quarters[-2]:
                continue  # some institutions missed a quarter, for the compliance views
            start = (quarter.q - 1) * numbers_per_quarter + 1
            numbers = [number_for(fmt, ABBR[code], index, quarter, start + k) for k in range(count)]
            if index < 2 and quarter == quarters[0]:
                numbers.extend(SHARED_NUMBERS)
            documents = None
            if index == 0 and quarter == current and DEMO_REPORT.is_file():
                numbers.append(SAMPLE_NUMBER)
                documents = {normalize_number(SAMPLE_NUMBER): hashlib.sha256(DEMO_REPORT.read_bytes()).hexdigest()}
            normalised = [normalize_number(n) for n in numbers]
            digest = hashlib.sha256(("demo:%d:%s" % (iid, quarter)).encode()).hexdigest()
            receipt = registration.register(institution_id=iid, quarter=quarter, numbers=normalised, sha256=digest,
                                            file_name=f"{quarter}-报告编号.xlsx", created_by="demo",
                                            documents=documents)
            total += receipt.accepted
            batches += 1
            late = index % 9 == 8 and quarter >= quarters[0]  # a few late uploads among the recent quarters
            _backdate(session_factory, receipt.batch_id, quarter, late=late, today=today)
        # a voided report in the oldest quarter
        first = normalize_number(number_for(fmt, ABBR[code], index, quarters[0], (quarters[0].q - 1) * numbers_per_quarter + 1))
        registration.withdraw(institution_id=iid, items=[(None, first, "报告信息有误，已作废重新出具")])
    return DemoSummary(len(plan_ids), total, batches, created=True)


def _quarters_before(first_shown: Quarter, *, since: dt.date) -> list[Quarter]:
    """The quarters from the one containing ``since`` (not before reporting began) up to the one
    before ``first_shown``."""
    quarter, out = max(Quarter.containing(since), REPORTING_BEGAN), []
    while quarter < first_shown:
        out.append(quarter)
        quarter = quarter.next()
    return out


def _backdate(session_factory, batch_id: int, quarter: Quarter, *, late: bool, today: dt.date) -> None:
    """Date a demo batch as a lab would have uploaded it: in the window, or late for a few."""
    day = quarter.deadline + dt.timedelta(days=20) if late else quarter.last_day + dt.timedelta(days=12)
    day = min(day, today)
    with session_factory() as session:
        batch = session.get(Batch, batch_id)
        batch.created_at = dt.datetime.combine(day, dt.time(10, 30), tzinfo=SHANGHAI)
        batch.late = day > quarter.deadline
        session.commit()
