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


def _index_of(item_grams: list[list[int]]):
    """An EvalIndex over given n-gram hashes per item (as `EvalIndex.build` lays it out)."""
    import numpy as np

    from etl.stages.decontaminate import EvalIndex, prefilter

    pairs = sorted({(g, i) for i, grams in enumerate(item_grams) for g in grams})
    grams = np.array([g for g, _ in pairs], dtype=np.uint64)
    distinct, first, counts = np.unique(grams, return_index=True, return_counts=True)
    items = np.array([i for _, i in pairs], dtype=np.int64)
    return EvalIndex(distinct, first.astype(np.int64), counts.astype(np.int64), items,
                     np.bincount(items, minlength=len(item_grams)), prefilter(distinct))


def _brute_force(item_grams: list[list[int]], texts: list[list[int]]) -> dict[tuple[int, int], int]:
    shared = {}
    for t, hashes in enumerate(texts):
        for i, grams in enumerate(item_grams):
            if overlap := len(set(hashes) & set(grams)):
                shared[(t, i)] = overlap
    return shared


def _probe(index, texts: list[list[int]]) -> dict[tuple[int, int], int]:
    import numpy as np

    hashes = np.array([h for t in texts for h in t], dtype=np.uint64)
    owner = np.repeat(np.arange(len(texts)), [len(t) for t in texts])
    rows, items, shared = index.probe(hashes, owner, len(texts))
    return dict(zip(zip(rows.tolist(), items.tolist(), strict=True), shared.tolist(), strict=True))


def test_prefilter_flags_every_indexed_gram_and_few_others():
    import numpy as np

    from etl.stages.decontaminate import prefilter, top_bits

    grams = np.unique(np.random.default_rng(3).integers(0, 2**64 - 1, 40_000, dtype=np.uint64, endpoint=True))
    present = prefilter(grams)
    assert present.size == 1 << 20 and present.size >= 16 * grams.size
    assert present[top_bits(grams, present.size)].all()
    assert present.sum() <= grams.size and present.mean() < 1 / 16
    assert prefilter(np.empty(0, dtype=np.uint64)).size == 1 << 16
    assert top_bits(np.array([0, 2**63, 2**64 - 1], dtype=np.uint64), 1 << 16).tolist() == [0, 1 << 15, (1 << 16) - 1]


def test_probe_confirms_prefilter_candidates_exactly():
    """N-grams at the ends of the hash range and of the flag table, and training n-grams that share
    a flag with an indexed one but differ from it (in the low bits, or in the first bit below the
    flag's): only exact equals count, each distinct n-gram of a text once."""
    top = 2**64 - 1
    low_bits = 64 - 16                     # a table of 2^16 flags: flag = the top 16 bits
    item_grams = [[0, 1, top, top - 1, 5 << low_bits], [(1 << low_bits) - 1, 1 << low_bits, top]]
    index = _index_of(item_grams)
    assert index.present.size == 1 << 16
    near = [2, 3, top - 2, (5 << low_bits) + 1, (5 << low_bits) | (1 << (low_bits - 1)), (1 << low_bits) + 1,
            (1 << low_bits) - 2, (6 << low_bits) - 1]
    texts = [
        [0, 1, top, top - 1, 5 << low_bits],                         # all of item 0, and item 1's `top`
        near,                                                        # flags set, no n-gram equal
        near + [1 << low_bits, 1 << low_bits, 1 << low_bits],        # one of item 1's, three times
        [],
        [top, 0, top, 12345, (1 << low_bits) - 1] + near,
    ]
    expected = {(0, 0): 5, (0, 1): 1, (2, 1): 1, (4, 0): 2, (4, 1): 2}
    assert _brute_force(item_grams, texts) == expected
    assert _probe(index, texts) == expected


def test_probe_matches_brute_force_when_flags_collide_often():
    """Many eval n-grams in a small table: most training n-grams pass the prefilter and must be
    rejected by the exact comparison."""
    import numpy as np

    rng = np.random.default_rng(11)
    pool = rng.integers(0, 2**64 - 1, 3_000, dtype=np.uint64, endpoint=True).tolist()
    item_grams = [rng.choice(pool[:1_500], int(rng.integers(1, 60)), replace=False).tolist() for _ in range(80)]
    # Training n-grams: indexed ones, others sharing their top 20 bits, and unrelated ones.
    twins = [(g & ~((1 << 44) - 1)) | int(rng.integers(0, 1 << 44)) for g in pool[:1_500]]
    texts = [rng.choice(pool + twins, int(rng.integers(0, 400))).tolist() for _ in range(200)]
    index = _index_of(item_grams)
    expected = _brute_force(item_grams, texts)
    assert len(expected) > 1_000
    assert _probe(index, texts) == expected
