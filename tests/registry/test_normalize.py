import pytest
from hypothesis import given, strategies as st

from registry.numbers.normalize import (
    InvalidValue, make_uscc, name_key, normalize_certificate_number, normalize_number, normalize_uscc,
)


@pytest.mark.parametrize("raw, expected", [
    ("WT2020-000123", "WT2020-000123"),
    (" wt2020\u2014000123 ", "WT2020-000123"),
    ("（2020）沪检字第0123号", "(2020)沪检字第0123号"),
    ("国环测〔2021〕第045号", "国环测(2021)第045号"),
    ("【BG】2020", "[BG]2020"),
    ("BG\u200b-2020-Q4-0001", "BG-2020-Q4-0001"),
    ("ＷＴ２０２０－０１", "WT2020-01"),
    ("a b\tc\u3000d", "ABCD"),
    ("12\u221234\ufe6356\u201078", "12-34-56-78"),
    ("No.5#A+B_C/D", "NO.5#A+B_C/D"),
])
def test_numbers_are_normalised(raw, expected):
    assert normalize_number(raw) == expected


@pytest.mark.parametrize("raw, code", [
    ("", "empty"), ("  \u200b ", "empty"), ("A" * 65, "too_long"), ("WT<script>", "bad_character"),
    ("AB@CD", "bad_character"), ("2020~2021", "bad_character"), ("é123", "bad_character"),
])
def test_invalid_numbers_say_why(raw, code):
    with pytest.raises(InvalidValue) as info:
        normalize_number(raw)
    assert info.value.code == code


@given(st.text(max_size=80))
def test_normalisation_is_idempotent(raw):
    try:
        once = normalize_number(raw)
    except InvalidValue:
        return
    assert normalize_number(once) == once
    assert 0 < len(once) <= 64


def test_name_key_maps_brackets_and_spaces():
    assert name_key("北京 市〔测试〕检测中心") == name_key("北京市(测试)检测中心")
    assert name_key("ＡＢＣ检测") == "ABC检测"


VALID_USCC = "91350100M000100Y43"


def test_uscc_valid_and_lowercase():
    assert normalize_uscc(VALID_USCC) == VALID_USCC
    assert normalize_uscc(VALID_USCC.lower()) == VALID_USCC
    assert normalize_uscc(make_uscc("91110000100000000")) == "91110000100000000R"


@pytest.mark.parametrize("raw, code", [
    ("91350100M000100Y44", "uscc_check"),
    ("91350100M000100Y4", "uscc_length"),
    ("91350100M000100Y431", "uscc_length"),
    ("91350100M00O100Y43", "uscc_character"),  # letter O is not used
])
def test_uscc_rejections(raw, code):
    with pytest.raises(InvalidValue) as info:
        normalize_uscc(raw)
    assert info.value.code == code


def test_certificate_numbers():
    assert normalize_certificate_number("201101234567") == "201101234567"
    assert normalize_certificate_number(" 2011 0123 4567 ") == "201101234567"
    for bad, code in [("20110123456", "certificate_format"), ("2011012345678", "certificate_format"),
                      ("20AB01234567", "certificate_format"), ("203301234567", "certificate_authority")]:
        with pytest.raises(InvalidValue) as info:
            normalize_certificate_number(bad)
        assert info.value.code == code


@given(st.text(alphabet=st.sampled_from("aZz09-/()[]_.#+ \t\u3000－〔】\u200bé号"), max_size=70))
def test_the_plain_ascii_shortcut_agrees_with_the_general_steps(raw):
    from registry.numbers.normalize import _normalize_number

    try:
        expected = _normalize_number(raw)
    except InvalidValue as exc:
        with pytest.raises(InvalidValue) as info:
            normalize_number(raw)
        assert info.value.code == exc.code
        return
    assert normalize_number(raw) == expected
