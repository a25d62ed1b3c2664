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


# English sentences that name a drug (or a symptom) in Chinese, and Chinese sentences that name one in
# English: the sentence decides, not the presence of Han characters.
MIXED = {
    "Is 布洛芬 safe?": "en",
    "Is 布洛芬缓释胶囊 safe for children under six?": "en",
    "Take 阿莫西林 three times a day after meals.": "en",
    "The doctor prescribed 六味地黄丸.": "en",
    "My mother has been taking 阿莫西林 for three days but her fever has not gone down.": "en",
    "hypertension 怎么治疗": "zh",
    "患者有 hypertension 病史": "zh",
    "请问 ibuprofen 可以跟 acetaminophen 一起吃吗": "zh",
    "血常规：WBC 11.4，NEUT 80%，CRP 升高": "zh",
    "CT MRI 都正常": "zh",
    "insulin glargine 50mg bid 可以吗": "zh",
    "最近 shortness of breath 很严重，能吃 insulin glargine 吗": "zh",
}


def test_mixed_text_decided_by_share_of_content():
    langs, scores = LanguageTagger(("zh", "en")).tag(list(MIXED))
    assert dict(zip(MIXED, langs, strict=True)) == MIXED
    # 2 English words + 1 frame word ("Is") against 3 Han characters (1.5 words): English, 3/4.5 of the content
    assert scores[0] == round(3 / 4.5, 4)


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
