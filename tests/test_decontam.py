import json

import pyarrow as pa

from etl.catalog import DecontamConfig
from etl.stages.decontaminate import Decontaminate, text_ngrams
from etl.stages.memory import run_in_memory
from etl.stages.normalise import Normalise
from tests.stage_rows import TURN, pretrain

EVAL_QUESTION = "患者，男，56岁，反复上腹痛3年，进食后加重，伴反酸嗳气，胃镜示胃窦部溃疡，最可能的诊断是什么？"
EVAL_EN = "Does aspirin reduce the risk of recurrent stroke in patients with atrial fibrillation?"


def eval_table() -> pa.Table:
    messages = pa.array([[{"role": "user", "content": EVAL_QUESTION}, {"role": "assistant", "content": "胃溃疡"}],
                         [{"role": "user", "content": EVAL_EN}, {"role": "assistant", "content": "yes"}],
                         [{"role": "user", "content": "头痛"}, {"role": "assistant", "content": "偏头痛"}]],
                        type=pa.list_(TURN))
    return pa.table({"task": ["sft"] * 3, "id": ["cmb/1", "pubmedqa/7", "cmb/2"],
                     "source": ["cmb", "pubmedqa", "cmb"], "messages": messages,
                     "text": pa.nulls(3, pa.string())})


def test_training_rows_holding_an_eval_item_are_removed_and_reported(tmp_path):
    texts = [
        "题目：" + EVAL_QUESTION.replace("，", ",") + "答案：胃溃疡。解析：节律性上腹痛。",   # contains the item
        "患者，女，30岁，头痛2天，伴恶心，无发热，考虑偏头痛，建议休息并观察症状变化。",       # unrelated
        "Question: " + EVAL_EN.upper() + " Answer: yes, anticoagulation is preferred.",  # English, case changed
        "头痛",                                                                           # short item: exact only
        "头痛欲裂，伴有呕吐，需要马上去医院吗？",                                              # contains 头痛: not a hit
    ]
    out, removed = run_in_memory("pretrain", pretrain(texts), [Normalise("pretrain"),
                                 Decontaminate("pretrain", DecontamConfig())],
                                 tmp_path / "work", tmp_path / "reports", eval_table=eval_table())
    assert out.column("text").to_pylist() == [texts[1], texts[4]]
    assert removed["decontaminate"]["src"] == 3
    report = json.loads((tmp_path / "reports" / "decontamination-pretrain.json").read_text())
    assert report["eval_sources"]["cmb"]["matched_training_rows"] == 2
    sample = report["eval_sources"]["pubmedqa"]["samples"][0]
    assert sample["eval_id"] == "pubmedqa/7" and sample["training_id"] == "src/0002"


def test_partial_overlap_below_threshold_is_kept(tmp_path):
    half = EVAL_QUESTION[:20] + "其余内容完全不同，讲的是高血压患者的日常饮食管理和运动建议。"
    out, _ = run_in_memory("pretrain", pretrain([half]), [Decontaminate("pretrain", DecontamConfig())],
                           tmp_path / "w", tmp_path / "r", eval_table=eval_table())
    assert out.num_rows == 1


def test_ngrams_use_characters_for_chinese_and_words_for_english():
    grams, offsets = text_ngrams(["一二三四五六七八九十", "one two three four five six seven eight nine ten"], 5, 5)
    assert offsets.tolist() == [0, 6, 12]
    assert grams.size == 12


def _reference_units(text: str) -> list[str]:
    """The per-text Python definition the vectorised units replace (NFKC, lower, T→S, regex)."""
    import re
    import unicodedata

    from etl.textnorm import opencc_character_table

    han = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
    folded = unicodedata.normalize("NFKC", text).lower().translate(opencc_character_table("TSCharacters"))
    return re.findall(f"[{han}]|[^\\W_{han}]+(?:[.]\\d+)*", folded)


def test_vectorised_units_and_coverage_match_the_per_text_definition():
    from etl.stages.decontaminate import EvalIndex, unit_windows
    from etl.textnorm import match_unit_lists

    texts = [EVAL_QUESTION, EVAL_EN, "最近 Insomnia 很嚴重, 血糖7.8mmol/L，ＡＢＣ１２ 〇 café α x_y 𠀀字",
             "Question: " + EVAL_EN.upper() + " Answer: yes.", "题目：" + EVAL_QUESTION[:30] + "其他内容。", ""]
    assert match_unit_lists(texts).to_list() == [_reference_units(t) for t in texts]
    config = DecontamConfig(ngram_zh=5, ngram_en=3)
    index = EvalIndex.build([EVAL_QUESTION, EVAL_EN], config)
    rows, items, shared = index.probe(*unit_windows(texts, config.ngram_zh, config.ngram_en), len(texts))

    def grams(units: list[str], n: int) -> set[tuple[str, ...]]:
        return {tuple(units[i:i + n]) for i in range(len(units) - n + 1)} if len(units) >= n else {tuple(units)}

    zh = [grams(_reference_units(t), 5) for t in (EVAL_QUESTION,)] + [grams(_reference_units(EVAL_EN), 3)]
    expected = {}
    for r, text in enumerate(texts):
        units = _reference_units(text)
        n = 5 if units and sum(len(u) == 1 and not u.isascii() for u in units) * 2 >= len(units) else 3
        for i, item in enumerate(zh):
            overlap = len(grams(units, n) & item) if units else 0
            if overlap:
                expected[(r, i)] = overlap
    assert dict(zip(zip(rows.tolist(), items.tolist(), strict=True), shared.tolist(), strict=True)) == expected
    assert expected[(0, 0)] == len(zh[0]) and expected[(3, 1)] == len(zh[1])
