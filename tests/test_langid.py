import pyarrow as pa

from etl.catalog import LangIdConfig
from etl.stages.langid import LangId, LanguageTagger
from tests.stage_rows import sft

CASES = {
    "头晕": "zh", "胃疼": "zh", "rash": "en", "yes": "en", "Yes.": "en",
    "心电图提示ST段压低": "zh", "空腹血糖7.8mmol/L": "zh", "最近 insomnia 很严重，能吃 melatonin 吗": "zh",
    "CT示右肺下叶结节，5mm": "zh", "metoprolol 500mg bid 可以吗": "zh", "頭暈想吐": "zh",
    "What does 头晕 mean for an elderly patient?": "en", "The patient has a history of hypertension.": "en",
    "123": "und", "": "und", "？！": "und",
}


def test_tricky_strings():
    langs, scores = LanguageTagger(("zh", "en")).tag(list(CASES))
    assert dict(zip(CASES, langs, strict=True)) == CASES
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] == 1.0 and scores[list(CASES).index("123")] == 0.0


def test_deterministic():
    tagger = LanguageTagger(("zh", "en"))
    assert tagger.tag(list(CASES)) [0] == tagger.tag(list(CASES))[0]


def test_shared_script_asks_lingua_among_configured_languages():
    langs, _ = LanguageTagger(("zh", "en", "fr")).tag(["Bonjour, je suis malade depuis trois jours.",
                                                       "I have been sick for three days.", "头晕"])
    assert langs == ["fr", "en", "zh"]


def test_sft_rows_tagged_on_user_and_assistant_text():
    table = sft([[("system", "You are a helpful medical assistant. Answer carefully and kindly."),
                  ("user", "头晕想吐怎么办"), ("assistant", "建议多休息，必要时就医。")],
                 [("user", "rash"), ("assistant", "Keep it clean and see a doctor if it spreads.")]])
    out = LangId("sft", LangIdConfig()).apply(table.to_batches()[0])
    assert out.column("lang").to_pylist() == ["zh", "en"]
    assert out.schema.field("lang_score").type == pa.float32()
