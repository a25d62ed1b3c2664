"""A labelled language-tagging set: full sentences, one-word texts, code-mixed clinical Chinese and
Traditional Chinese, built from the generator's vocabulary (seeded)."""

from __future__ import annotations

import random

from bench.generate import (
    EN_DISEASES,
    EN_DRUGS,
    EN_SYMPTOMS,
    ZH_DISEASES,
    ZH_DRUGS,
    ZH_SYMPTOMS,
    _document,
    _s2t,
)

ISSUE_EXAMPLES = [("头晕", "zh"), ("胃疼", "zh"), ("rash", "en"), ("yes", "en"), ("心电图提示ST段压低", "zh"),
                  ("空腹血糖7.8mmol/L", "zh"), ("最近 insomnia 很严重，能吃 melatonin 吗", "zh"), ("頭暈想吐", "zh")]
ZH_SHORT = [*ZH_SYMPTOMS, *ZH_DISEASES, *ZH_DRUGS, "发烧", "胃疼", "嗓子疼", "拉肚子", "便秘", "流鼻涕", "牙疼",
            "谢谢", "好的", "是的", "不是", "没有", "怎么办", "吃什么药", "要紧吗", "挂什么科", "多久能好"]
EN_SHORT = [*EN_SYMPTOMS, *EN_DISEASES, *EN_DRUGS, "yes", "no", "ok", "thanks", "thank you", "help", "pain",
            "itchy", "sore throat", "runny nose", "toothache", "constipation", "what dose?", "is it serious?"]
MIXED = [
    "最近 {en_sym} 很严重，能吃 {en_drug} 吗", "心电图提示ST段压低，{zh_sym}明显", "空腹血糖{val}mmol/L，需要用{zh_drug}吗",
    "{en_drug} {dose}mg bid 可以吗", "HbA1c {val}%，需要调整{zh_drug}剂量吗？", "医生说是 {en_dis}，要紧吗",
    "CT示右肺下叶结节，{size}mm", "做了 MRI 和 CT，结果说 {zh_dis}", "BP {bp}mmHg，HR {hr}，要不要吃{zh_drug}",
    "查了 ALT {n} U/L，AST 也偏高", "{en_drug}和{zh_drug}能一起吃吗", "我有 {en_dis}，可以吃{zh_drug}吗",
]


def labelled_set(seed: int = 3) -> list[tuple[str, str, str]]:
    """(text, label, group) triples."""
    rng = random.Random(seed)
    items: list[tuple[str, str, str]] = [(t, label, "issue_examples") for t, label in ISSUE_EXAMPLES]
    for _ in range(6000):
        items.append((_document(rng, True), "zh", "zh_text"))
    for _ in range(4000):
        items.append((_document(rng, False), "en", "en_text"))
    for _ in range(2000):
        word = rng.choice(ZH_SHORT)
        items.append((word + rng.choice(["", "", "。", "？", "了"]), "zh", "zh_short"))
    for _ in range(2000):
        word = rng.choice(EN_SHORT)
        items.append((rng.choice([word, word.capitalize(), word + ".", word + "?"]), "en", "en_short"))
    for _ in range(3000):
        items.append((rng.choice(MIXED).format(
            en_sym=rng.choice(EN_SYMPTOMS), en_drug=rng.choice(EN_DRUGS), en_dis=rng.choice(EN_DISEASES),
            zh_sym=rng.choice(ZH_SYMPTOMS), zh_drug=rng.choice(ZH_DRUGS), zh_dis=rng.choice(ZH_DISEASES),
            val=f"{rng.uniform(4, 12):.1f}", dose=rng.choice([5, 10, 50, 100, 500]), size=rng.randint(3, 30),
            bp=f"{rng.randint(100, 190)}/{rng.randint(60, 110)}", hr=rng.randint(50, 120), n=rng.randint(20, 300)),
            "zh", "code_mixed"))
    for _ in range(3000):
        text = _document(rng, True) if rng.random() < 0.5 else rng.choice(ZH_SHORT)
        items.append((text.translate(_s2t()), "zh", "traditional"))
    return items
