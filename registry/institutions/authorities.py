"""The authorities (审核部门): SAMR, provincial bureaus in GB/T 2260 order, review groups, CNAS."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.institutions.models import Authority

PROVINCES = [
    ("01", "北京", "Beijing"), ("02", "天津", "Tianjin"), ("03", "河北", "Hebei"), ("04", "山西", "Shanxi"),
    ("05", "内蒙古", "Inner Mongolia"), ("06", "辽宁", "Liaoning"), ("07", "吉林", "Jilin"),
    ("08", "黑龙江", "Heilongjiang"), ("09", "上海", "Shanghai"), ("10", "江苏", "Jiangsu"),
    ("11", "浙江", "Zhejiang"), ("12", "安徽", "Anhui"), ("13", "福建", "Fujian"), ("14", "江西", "Jiangxi"),
    ("15", "山东", "Shandong"), ("16", "河南", "Henan"), ("17", "湖北", "Hubei"), ("18", "湖南", "Hunan"),
    ("19", "广东", "Guangdong"), ("20", "广西", "Guangxi"), ("21", "海南", "Hainan"), ("22", "重庆", "Chongqing"),
    ("23", "四川", "Sichuan"), ("24", "贵州", "Guizhou"), ("25", "云南", "Yunnan"), ("26", "西藏", "Tibet"),
    ("27", "陕西", "Shaanxi"), ("28", "甘肃", "Gansu"), ("29", "青海", "Qinghai"), ("30", "宁夏", "Ningxia"),
    ("31", "新疆", "Xinjiang"),
]
_MUNICIPALITIES = {"北京", "天津", "上海", "重庆"}
_AUTONOMOUS = {"内蒙古": "内蒙古自治区", "广西": "广西壮族自治区", "西藏": "西藏自治区", "宁夏": "宁夏回族自治区", "新疆": "新疆维吾尔自治区"}


def _provincial_name(short: str) -> str:
    if short in _MUNICIPALITIES:
        region = short + "市"
    else:
        region = _AUTONOMOUS.get(short, short + "省")
    return f"{region}市场监督管理局"


AUTHORITIES: list[tuple[str, str, str, str]] = (
    [("00", "national", "国家市场监督管理总局（国家认证认可监督管理委员会）", "SAMR / CNCA")]
    + [(code, "provincial", _provincial_name(short), f"{en} Administration for Market Regulation") for code, short, en in PROVINCES]
    + [("32", "provincial", "新疆生产建设兵团市场监督管理局", "Xinjiang Production and Construction Corps AMR")]
    + [
        ("40", "accreditation", "中国合格评定国家认可委员会（CNAS）", "CNAS"),
        ("41", "review_group", "国家认监委机动车检验机构资质认定评审组", "National review group: motor vehicle inspection"),
        ("42", "review_group", "国家认监委建设工程检验机构资质认定评审组", "National review group: construction engineering"),
        ("43", "review_group", "国家认监委食品检验机构资质认定评审组", "National review group: food"),
        ("44", "review_group", "国家认监委生态环境监测机构资质认定评审组", "National review group: environmental monitoring"),
        ("45", "review_group", "国家认监委医疗器械检验机构资质认定评审组", "National review group: medical devices"),
    ]
)


def seed_authorities(session: Session) -> int:
    """Insert or update every authority; idempotent. Returns how many were created."""
    existing = {a.code: a for a in session.scalars(select(Authority))}
    created = 0
    for code, kind, name, name_en in AUTHORITIES:
        row = existing.get(code)
        if row is None:
            session.add(Authority(code=code, kind=kind, name=name, name_en=name_en))
            created += 1
        else:
            row.kind, row.name, row.name_en = kind, name, name_en
    session.flush()
    return created


def find_authority(session: Session, text: str) -> Authority | None:
    """An authority by code (``"11"``) or by name, full or as its province's short name."""
    text = (text or "").strip()
    if not text:
        return None
    if text.isdigit():
        return session.scalar(select(Authority).where(Authority.code == text.zfill(2)))
    for authority in session.scalars(select(Authority)):
        if text == authority.name or authority.name.startswith(text):
            return authority
    return None
