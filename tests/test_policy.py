"""Shipped policy profiles: they load, cite articles that exist in their regulation, carry the key numbers,
and a broken site profile is rejected with the file and key named."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest

from appliance.policy import PolicyError, available_profiles, load_profile

REGULATIONS = Path(__file__).parents[2] / "shared" / "regulations"
SHIPPED = ["000", "001", "002", "003", "004"]

NUMERAL = "[一二三四五六七八九十]+"
# An article heading opens a line, after indentation or leftover markup such as "[bookmark: _GoBack]".
HEADING = re.compile(rf"^(?:\s|\[[^\]\n]*\])*第({NUMERAL})条", re.MULTILINE)
ITEM = re.compile(rf"[（(]({NUMERAL})[）)]")
CITE = re.compile(r"(\d{3}) Art\. (\d+)(?:\((\d+)\))?")


def chinese_numeral(text: str) -> int:
    """一 .. 九十九, as used for article and item numbers."""
    digit = "一二三四五六七八九".index
    if "十" not in text:
        return digit(text) + 1
    tens, _, ones = text.partition("十")
    return (digit(tens) + 1 if tens else 1) * 10 + (digit(ones) + 1 if ones else 0)


def articles(text: str) -> dict[int, set[int]]:
    """Article number -> item numbers (（一） ...) found in that article."""
    heads = list(HEADING.finditer(text))
    ends = [h.start() for h in heads[1:]] + [len(text)]
    return {
        chinese_numeral(h.group(1)): {chinese_numeral(i) for i in ITEM.findall(text, h.end(), end)}
        for h, end in zip(heads, ends, strict=True)
    }


def cites(data: dict, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, citation) for every cite in a dumped profile."""
    for key, value in data.items():
        if isinstance(value, dict):
            yield from cites(value, f"{prefix}{key}.")
        elif key.endswith("cite"):
            yield f"{prefix}{key}", value


@pytest.fixture(scope="module")
def regulations() -> Path:
    if not REGULATIONS.is_dir():
        pytest.skip(f"regulation texts not found at {REGULATIONS}")
    return REGULATIONS


def test_articles_parser_reads_chinese_headings_and_items():
    text = "[bookmark: x]　　第一条 甲\n第十二条 乙（一）丙；(二)丁\n  第二十一条 戊"
    assert articles(text) == {1: set(), 12: {1, 2}, 21: set()}


def test_one_profile_ships_per_regulation():
    assert available_profiles() == SHIPPED


@pytest.mark.parametrize("profile_id", SHIPPED)
def test_shipped_profile_loads(profile_id):
    profile = load_profile(profile_id)
    assert profile.id == profile_id
    assert profile.source.startswith(f"{profile_id}_")
    retention = profile.retention
    keep, routine = retention.unclassified.approx_timedelta(), retention.routine.approx_timedelta()
    assert keep is None or (routine is not None and keep >= routine), "unclassified shorter than routine"


def unknown_cites(data: dict, regulation: str, structure: dict[int, set[int]]) -> list[str]:
    """Cites in a dumped profile naming another regulation, or an article/item its text lacks."""
    return [
        f"{key} = {cite!r}"
        for key, cite in cites(data)
        for reg, article, item in CITE.findall(cite)
        if reg != regulation or int(article) not in structure or (item and int(item) not in structure[int(article)])
    ]


def test_unknown_cites_catches_missing_article_item_and_foreign_regulation():
    structure = {9: set(), 11: {1, 2}}
    data = {
        "a": {"cite": "002 Art. 10"},
        "b": {"cite": "002 Art. 11(3)"},
        "c_cite": "003 Art. 9",
        "d": {"cite": "002 Art. 11(2)"},
    }
    assert unknown_cites(data, "002", structure) == [
        "a.cite = '002 Art. 10'",
        "b.cite = '002 Art. 11(3)'",
        "c_cite = '003 Art. 9'",
    ]


@pytest.mark.parametrize("profile_id", SHIPPED)
def test_every_cite_names_an_existing_article_of_its_regulation(profile_id, regulations):
    profile = load_profile(profile_id)
    structure = articles((regulations / profile.source).read_text(encoding="utf-8"))
    assert structure, f"no article headings found in {profile.source}"
    wrong = unknown_cites(profile.model_dump(), profile_id, structure)
    assert not wrong, f"{profile.source} has no such article/item: {wrong}"


def amount_unit_cite(value) -> tuple[int, str, str]:
    return value.amount, value.unit, value.cite


def test_003_key_numbers():
    p = load_profile("003")
    assert amount_unit_cite(p.upload_deadline) == (24, "hours", "003 Art. 16")
    assert p.upload_deadline_special is not None
    assert amount_unit_cite(p.upload_deadline_special) == (3, "working_days", "003 Art. 16")
    assert amount_unit_cite(p.classification_deadline) == (2, "working_days", "003 Art. 17")
    assert amount_unit_cite(p.retention.routine) == (2, "years", "003 Art. 22")
    assert (p.officers_per_camera.value, p.officers_per_camera.cite) == (2, "003 Art. 15")
    assert p.integrity.free_camera_after == "central_confirm"


def test_004_key_numbers():
    p = load_profile("004")
    assert amount_unit_cite(p.retention.routine) == (6, "months", "004 Art. 11")
    assert amount_unit_cite(p.upload_deadline) == (0, "end_of_working_day", "004 Art. 10")


def _replace(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (lambda text: 'colour = "red"\n' + text, "colour", "unknown key"),
        (
            _replace("value = 80\n", "value = 80\npercent = 80\n"),
            "checkout.min_battery_pct.percent",
            "unknown key",
        ),
        (
            _replace("[officers_per_camera]\nvalue = 2", '[officers_per_camera]\nvalue = "two"'),
            "officers_per_camera.value",
            "valid integer",
        ),
        (_replace('unit = "years"', 'unit = "decades"'), "retention.routine.unit", "'years'"),
    ],
    ids=["unknown-key", "unknown-nested-key", "wrong-type", "wrong-unit"],
)
def test_bad_profile_file_names_file_and_key(tmp_path, edit, key, reason):
    good = (resources.files("appliance") / "policies" / "003.toml").read_text(encoding="utf-8")
    bad = edit(good)
    assert bad != good, "edit did not apply"
    path = tmp_path / "site.toml"
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_profile("site", path)
    line = next((ln for ln in str(err.value).splitlines() if f"{path}: {key}: " in ln), "")
    assert reason in line, str(err.value)
