"""redact_strings against the rule chain it replaced (every group's prefilter scanned over all rows,
kept here as it was written), on planted personal data and look-alikes (bench.redact_quality's
generator), the texts of tests/helpers_texts.py and strings that sit on the prefilters' edges."""

from __future__ import annotations

import polars as pl
import pytest

from bench.redact_quality import generate_rows
from etl.stages.redact import (
    _GROUPS,
    _ID_CANDIDATE,
    _SHIELD,
    _WEB_CUES,
    SHIELD_CUES,
    _on_rows,
    _redact_ids,
    _rules,
    redact_strings,
)
from tests.helpers_texts import all_texts

EDGES = ["电话13912345678", "标本号13912345678，电话 010-62345678", "www.example.cn/a?b=1", "a@b.co", "192.168.1.20",
         "身份证号 11010519491231002X", "11010519491231002X", "110105491231002", "微信号 abc_12345", "QQ 123456789",
         "住院号 A12345", "400-123-4567", "(555) 123-4567", "+44 7700 900123", "Tel: 62345678", "患者张三，男，45岁",
         "接诊医生：李红", "——张伟医生", "Dr. John Smith", "12345", "123-456", "号", "\ue00f_", "批号 123456 电话13912345678"]


def old_redact_strings(texts: pl.Series, names: bool = True) -> pl.Series:
    out = _on_rows(texts.clone(), SHIELD_CUES, lambda t: t.str.replace_all(
        f"({SHIELD_CUES})([：:＃#\\s]*)([0-9A-Za-z])", f"${{1}}${{2}}{_SHIELD}${{3}}"))
    out = _on_rows(out, _WEB_CUES, _rules(_GROUPS[0][2]))
    out = _on_rows(out, _ID_CANDIDATE, _redact_ids)
    for group, prefilter, rule_names in _GROUPS[1:]:
        if names or group != "name":
            out = _on_rows(out, prefilter, _rules(rule_names))
    return _on_rows(out, _SHIELD, lambda t: t.str.replace_all(_SHIELD, "", literal=True))


@pytest.mark.parametrize("names", [True, False])
def test_redact_strings_equals_the_chain_it_replaced(names: bool) -> None:
    planted = [text for row in generate_rows(3000, 14, pii_rate=0.3) for text in (row.question, row.answer)]
    for texts in (pl.Series([*EDGES, *planted], dtype=pl.String), all_texts()):
        new = redact_strings(texts, names)
        assert new.to_list() == old_redact_strings(texts, names).to_list()
        assert (new != texts).sum() > 20
