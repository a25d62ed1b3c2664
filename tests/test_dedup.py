import json

import pytest

from etl.catalog import DedupConfig, MinHashConfig
from etl.stages.dedup import ExactDedup, NearDedup, explain_dups
from etl.stages.memory import run_in_memory
from etl.stages.minhash import collision_probability, lsh_params
from etl.stages.normalise import Normalise
from tests.stage_rows import pretrain, sft

BASE = ("患者男，45岁，因反复胸闷、气短3年，加重1周入院。既往有高血压病史10年，规律服用氨氯地平，"
        "近期夜间阵发性呼吸困难，不能平卧，双下肢轻度水肿。心电图提示ST段压低，考虑冠心病、心功能不全，"
        "建议完善心脏彩超及冠脉造影检查，并调整降压方案。")


def run(table, stages, tmp_path, task="pretrain"):
    return run_in_memory(task, table, [Normalise(task), *stages], tmp_path / "work", tmp_path / "reports")


def chain(config: DedupConfig | None = None, task: str = "pretrain"):
    config = config or DedupConfig()
    return [ExactDedup(config), NearDedup(config.minhash, config.report_clusters, task)]


def test_lsh_params_follow_threshold():
    bands, rows = lsh_params(0.8, 128)
    assert bands * rows <= 128
    assert collision_probability(0.9, bands, rows) > 0.99
    assert collision_probability(0.5, bands, rows) < 0.05
    low_bands, low_rows = lsh_params(0.5, 128)
    assert low_rows < rows


def test_planted_cluster_merged_and_dose_pair_kept(tmp_path):
    texts = [
        BASE,
        BASE.replace("胸闷", "胸悶").replace("，", ", "),          # punctuation, spacing, Traditional: exact key
        BASE.replace("规律", "規律").replace("夜间", "夜問"),       # two character edits: near
        BASE.replace("近期夜间阵发性呼吸困难，不能平卧，", "") + "近期夜间阵发性呼吸困难，不能平卧。",  # reordered
        "阿司匹林100mg，每日一次，饭后服用。" + BASE,
        "阿司匹林300mg，每日一次，饭后服用。" + BASE,
        "头晕",
        "头晕",
        "头疼",
    ]
    out, removed = run(pretrain(texts), chain(), tmp_path)
    kept = out.column("text").to_pylist()
    assert kept.count("头晕") == 1 and "头疼" in kept
    assert texts[4] in kept and texts[5] in kept
    assert sum(t in kept for t in texts[:4]) == 1
    assert removed["exact_dedup"]["src"] == 2 and removed["near_dedup"]["src"] == 2
    counts = dict(zip(out.column("text").to_pylist(), out.column("dup_count").to_pylist(), strict=True))
    assert counts["头晕"] == 2
    assert max(counts[t] for t in texts[:4] if t in counts) == 4


def test_survivor_rule_priority_then_length_then_id(tmp_path):
    longer = BASE + "随访。"
    table = pretrain([BASE, longer, BASE], sources=["low", "low", "high"], priorities=[10, 10, 90],
                     ids=["low/b", "low/a", "high/z"])
    out, _ = run(table, chain(), tmp_path)
    assert out.column("id").to_pylist() == ["high/z"]
    meta = json.loads(out.column("meta")[0].as_py())
    assert meta["dedup"]["absorbed"] == {"low": 2}
    assert out.column("dup_count").to_pylist() == [3]
    same = pretrain([BASE, BASE.replace("。", "!"), longer], ids=["s/b", "s/a", "s/c"])
    out, _ = run(same, chain(), tmp_path)
    assert out.column("id").to_pylist() == ["s/c"]
    out, _ = run(pretrain([BASE, BASE.replace("。", "!")], ids=["s/b", "s/a"]), chain(), tmp_path)
    assert out.column("id").to_pylist() == ["s/a"]


def test_sft_answers_are_part_of_the_key(tmp_path):
    question = ("user", "头晕想吐怎么办？")
    table = sft([[question, ("assistant", "多休息，注意补充水分。" * 5)],
                 [question, ("assistant", "建议尽快就医，排查耳石症或颈椎问题。" * 5)],
                 [("user", "頭暈想吐怎麼辦"), ("assistant", "多休息,注意补充水分." * 5)]])
    out, removed = run(table, chain(), tmp_path, task="sft")
    assert out.num_rows == 2
    assert removed["exact_dedup"]["src"] == 1


@pytest.mark.parametrize("exact", [True, False])
def test_short_texts_match_only_when_identical(tmp_path, exact):
    config = DedupConfig(exact=exact, minhash=MinHashConfig(ngram=5))
    out, _ = run(pretrain(["胃疼", "胃疼。", "胃疼吗", "yes", "Yes!"]), chain(config)[0 if exact else 1:], tmp_path)
    # The longer spelling survives (survivor rule); "胃疼吗" is another text.
    assert sorted(out.column("text").to_pylist()) == sorted(["胃疼。", "胃疼吗", "Yes!"])


def test_deterministic_and_explained(tmp_path):
    texts = [BASE, BASE.replace("规律", "規律").replace("夜间", "夜問"), BASE + "。", "另一段完全不同的文字，讲的是糖尿病饮食控制。"]
    first, _ = run(pretrain(texts), chain(), tmp_path / "a")
    second, _ = run(pretrain(texts), chain(), tmp_path / "b")
    assert first.drop_columns(["_key", "_len"]).equals(second.drop_columns(["_key", "_len"]))
    report = explain_dups(tmp_path / "a" / "reports", 5)
    assert "KEEP" in report and "drop" in report and "near_dedup" in report


def test_normalise_keys_whole_rows_like_row_texts(tmp_path):
    from etl.stages.text import row_texts
    from etl.textnorm import match_key

    table = sft([[("system", "Be kind."), ("user", "頭暈，怎麼辦？"), ("assistant", "  多休息&nbsp;。")]])
    out = Normalise("sft").apply(table.to_batches()[0])
    assert out.column("messages").to_pylist()[0][2]["content"] == "多休息\xa0。"
    assert out.column("_key").to_pylist() == [match_key(t) for t in row_texts(out, "sft")]
    assert out.column("_len").to_pylist() == [len(row_texts(out, "sft")[0])]


REPORT = ("请检查下面这份超声报告有没有错别字：肝脏大小形态正常，包膜光滑，实质回声均匀，肝内管道结构清晰，门静脉内径正常。"
          "胆囊大小正常，壁光滑，腔内未见明显异常回声。胰腺大小形态正常，实质回声均匀，主胰管未见扩张。脾脏大小正常，"
          "实质回声均匀。双肾大小形态正常，皮髓质分界清晰，集合系统未见分离，双侧输尿管未见扩张。膀胱充盈良好，壁光滑，"
          "腔内未见明显异常回声。超声提示：肝、胆、胰、脾、双肾、膀胱未见明显异常。")
REPORT_TYPO = REPORT.replace("实质回声均匀。双肾", "实质回声均习。双肾")


def _contrastive_and_true_pair() -> tuple:
    return sft([
        [("user", REPORT), ("assistant", "报告无错别字。")],
        [("user", REPORT_TYPO), ("assistant", "报告中的错别字是“均习”，应为“均匀”。")],
        # a real near-duplicate of the first row: a spacing change and one character in each side
        [("user", REPORT.replace("肝脏大小", "肝脏 大小").replace("门静脉", "门脉")), ("assistant", "报告无错别字.")],
    ], sources=["a", "b", "c"])


def test_split_fields_keep_a_contrastive_pair_and_merge_a_real_duplicate(tmp_path):
    config = DedupConfig()
    assert config.minhash.fields == "split"          # DESIGN §5: the default
    out, removed = run(_contrastive_and_true_pair(), chain(config, "sft"), tmp_path, task="sft")
    answers = [m[-1]["content"] for m in out.column("messages").to_pylist()]
    assert answers == ["报告无错别字。", "报告中的错别字是“均习”，应为“均匀”。"]
    assert removed["near_dedup"] == {"c": 1}
    assert json.loads(out.column("meta").to_pylist()[0])["dedup"]["absorbed"] == {"c": 1}


def test_whole_row_fields_merge_the_contrastive_pair(tmp_path):
    config = DedupConfig(minhash=MinHashConfig(fields="whole"))
    out, removed = run(_contrastive_and_true_pair(), chain(config, "sft"), tmp_path, task="sft")
    assert out.num_rows == 1                         # the shared report dominates the whole-row key
    assert removed["near_dedup"] == {"a": 1, "c": 1}  # the longest row survives: "无错别字" is lost
