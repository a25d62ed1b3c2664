"""quality: each drop reason on small cases, per-source thresholds, and counting through the executor."""

from pathlib import Path

import pyarrow as pa

from etl.catalog import QualityConfig, QualityThresholds
from etl.executor import TaskRun
from etl.stages.base import settle
from etl.stages.normalise import Normalise
from etl.stages.quality import Quality, char_repetition, line_repetition
from tests import stage_rows

GOOD_ANSWER = "建议您先复查血常规和肝功能，空腹血糖7.8mmol/L偏高，注意控制饮食并按时服药。"


DEFAULTS = QualityConfig()


def reasons(task, table, config=DEFAULTS, overrides=None):
    batch = Quality(task, config, overrides).apply(table.to_batches()[0])
    return batch.column("_drop").to_pylist()


def qa(pairs, sources=None):
    return stage_rows.sft([[("user", q), ("assistant", a)] for q, a in pairs], sources)


def test_each_reason_on_sft_rows():
    table = qa([
        ("头疼怎么办？", GOOD_ANSWER),
        ("头疼怎么办？", "锟斤拷锟斤拷锟斤拷" + GOOD_ANSWER),                        # mojibake
        ("what is it?", "Ã¤Ã¶Ã¼ Ã© " + "the dose is fine " * 2),                    # Latin-1 read as UTF-8
        ("头疼怎么办？", "哈" * 80),                                               # one character repeated
        ("头疼怎么办？", "我很难受" * 20),                                          # a short phrase repeated
        ("头疼怎么办？", "\n".join(["多喝热水"] * 6 + ["注意休息"])),
        ("头疼怎么办？", "。。"),                                                   # nothing left after cleaning
        ("头疼怎么办？", "同上"),
        ("谢谢医生", "不知道。"),
        ("头疼怎么办？", "我院专家门诊，咨询热线<PHONE>，加微信<SOCIAL_ID>，免费咨询！"),
        ("我最近总是失眠，怎么办？", "我最近总是失眠，怎么办"),                    # echo
    ])
    assert reasons("sft", table) == [None, "mojibake", "mojibake", "char_repetition", "char_repetition",
                                     "line_repetition", "short_answer", "filler_answer", "filler_answer",
                                     "advertising", "echo"]


def test_clinical_text_with_numbers_and_one_referral_is_kept():
    table = qa([
        ("血压多少算高？", "血压140/90mmHg以上为高血压，建议到我院心内科复诊，监测血压。"),
        ("孩子发烧", "体温38.5℃可以口服布洛芬混悬液5ml，每6-8小时一次，多喝水。"),
        ("What dose?", "Take 500 mg twice daily for 7 days; HbA1c 7.2% is above target."),
        ("好的谢谢", "好的"),                                  # a short but real answer
        ("选哪个？", "A"),
    ])
    assert reasons("sft", table) == [None, None, None, None, None]


def test_pretrain_and_reward_rows():
    pretrain = stage_rows.pretrain([GOOD_ANSWER, "\ufffd" * 5 + "abc", "谢谢"])
    assert reasons("pretrain", pretrain) == [None, "mojibake", "filler_answer"]
    common = stage_rows.common(["r/0", "r/1"], ["r", "r"], [50, 50])
    prompt = pa.array([[{"role": "user", "content": "头疼怎么办"}]] * 2, type=pa.list_(stage_rows.TURN))
    reward = pa.table({"prompt": prompt, "chosen": pa.array([GOOD_ANSWER, "头疼怎么办"]),
                       "rejected": pa.array(["不知道", "不知道"]), **common})
    assert reasons("reward", reward) == [None, "echo"]


def test_per_source_thresholds_override_the_defaults():
    table = qa([("问", "好的"), ("问", "好的")], sources=["strict", "lenient"])
    overrides = {"strict": QualityThresholds(min_answer_chars=5)}
    assert reasons("sft", table, overrides=overrides) == ["short_answer", None]
    config = QualityConfig(min_answer_chars=5)
    assert reasons("sft", table, config, {"lenient": QualityThresholds(min_answer_chars=1)}) == ["short_answer", None]
    assert QualityConfig().for_source(QualityThresholds(drop_echo=False)).drop_echo is False


def test_measures():
    import polars as pl

    texts = pl.Series(["哈" * 20, "abcdefghij" * 3, "正常的一句话，没有重复的内容出现。", "短"])
    assert char_repetition(texts).round(2).tolist() == [0.95, 0.67, 0.06, 0.0]   # 的 ... 的: 1 pair in 17
    assert char_repetition(pl.Series(["短", "ab" * 6])).round(3).tolist() == [0.0, 0.833]   # the last text too
    lines = pl.Series(["a\nb\na\na", "a\nb", "x\n\ny\n z \nz"])
    assert line_repetition(lines).round(2).tolist() == [0.5, 0.0, 0.25]


def test_drop_reasons_are_counted_per_source_and_sampled_by_the_executor(tmp_path: Path):
    table = qa([("问", GOOD_ANSWER), ("问", "同上"), ("问", "同上"), ("问", "谢谢"), ("胃疼怎么办", "胃疼怎么办？")],
               sources=["a", "a", "b", "b", "b"])
    config = QualityConfig(report_samples=1)
    run = TaskRun("sft", [Normalise("sft"), Quality("sft", config)], tmp_path / "w", tmp_path / "r",
                  scan_eval=lambda columns: iter(()))
    out = list(run.run(lambda cols: iter(table.to_batches()), set(table.schema.names)))
    assert sum(b.num_rows for b in out) == 1
    assert "_drop" not in out[0].schema.names
    assert {s: dict(c) for s, c in run.counts["quality"].items()} == {
        "a": {"filler_answer": 1}, "b": {"filler_answer": 2, "echo": 1}}
    assert dict(run.removed["quality"]) == {"a": 1, "b": 3}
    samples = pa.Table.from_batches(run.dropped["quality"])
    assert sorted(samples.column("_drop").to_pylist()) == ["echo", "filler_answer"]   # one per reason


def test_settle_leaves_a_batch_without_report_columns_alone():
    batch = qa([("问", GOOD_ANSWER)]).to_batches()[0]
    same, tally = settle(batch)
    assert same is batch and tally.counts == {} and tally.dropped is None
