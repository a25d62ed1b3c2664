"""A seeded synthetic Chinese/English medical corpus with planted near-duplicates and hard negatives.

Every document has a ground-truth `cluster`: copies and near-copies share their original's cluster;
hard negatives (the original with a different dose, number or lab value) get a cluster of their own,
because clinically they are different texts and must survive dedup.

Variant kinds: `exact` copy, `punct_space` (punctuation and spacing changes), `width` (full-width /
half-width swaps), `traditional` (Simplified → Traditional), `char_edit` (1–3 letter substitutions,
insertions or deletions, never touching a number, on documents of 120+ characters, i.e. at most ~2.5% of the
text) and `reorder` (two sentences swapped).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl.textnorm import opencc_character_table

ZH_DRUGS = ["阿司匹林", "氨氯地平", "二甲双胍", "阿莫西林", "布洛芬", "奥美拉唑", "氯吡格雷", "阿托伐他汀", "头孢克肟",
            "左氧氟沙星", "硝苯地平", "美托洛尔", "缬沙坦", "胰岛素", "甲硝唑", "对乙酰氨基酚", "氯雷他定", "蒙脱石散"]
ZH_SYMPTOMS = ["头晕", "胸闷", "气短", "咳嗽", "发热", "腹痛", "恶心", "呕吐", "失眠", "心悸", "乏力", "腹泻", "头痛",
               "关节疼痛", "皮疹", "视物模糊", "尿频", "食欲不振", "耳鸣", "腰痛"]
ZH_DISEASES = ["高血压", "2型糖尿病", "冠心病", "慢性胃炎", "支气管炎", "肺炎", "甲状腺功能减退", "痛风", "贫血",
               "偏头痛", "胆囊炎", "类风湿关节炎", "慢性肾病", "哮喘", "脂肪肝", "骨质疏松"]
ZH_TESTS = [("空腹血糖", "mmol/L", 4.0, 12.0), ("糖化血红蛋白", "%", 5.0, 10.0), ("血肌酐", "μmol/L", 50, 300),
            ("总胆固醇", "mmol/L", 3.0, 8.0), ("尿酸", "μmol/L", 200, 600), ("白细胞", "×10^9/L", 3.0, 15.0),
            ("血红蛋白", "g/L", 80, 160), ("谷丙转氨酶", "U/L", 10, 200)]
ZH_SENTENCES = [
    "患者{sex}，{age}岁，因{sym}{dur}就诊。", "既往有{dis}病史{years}年，平时规律服用{drug}。",
    "近{dur2}来{sym}加重，伴有{sym2}，夜间尤为明显。", "查体：血压{bp}mmHg，心率{hr}次/分，体温{temp}℃。",
    "实验室检查示{test}{val}{unit}。", "建议{drug}{dose}mg，每日{times}次，{when}服用。",
    "医生您好，我最近总是{sym}，还有点{sym2}，请问是怎么回事？", "考虑{dis}可能性大，建议进一步完善{exam}检查。",
    "注意低盐低脂饮食，适当运动，戒烟限酒，定期复查。", "如出现{sym}加重或{sym2}，请及时到医院就诊。",
    "{drug}的常见不良反应包括{sym}和{sym2}，一般可耐受。", "心电图提示ST段压低，{exam}显示未见明显异常。",
    "孕妇及哺乳期妇女慎用{drug}，肝肾功能不全者应减量。", "本品为{dis}的一线治疗药物，疗程一般为{weeks}周。",
]
ZH_EXAMS = ["心脏彩超", "胸部CT", "腹部B超", "胃镜", "头颅MRI", "冠脉造影", "肺功能", "甲状腺功能"]
ZH_WHEN = ["饭前", "饭后", "睡前", "晨起空腹"]
EN_DRUGS = ["aspirin", "amlodipine", "metformin", "amoxicillin", "ibuprofen", "omeprazole", "clopidogrel",
            "atorvastatin", "lisinopril", "levothyroxine", "insulin glargine", "metoprolol", "losartan"]
EN_SYMPTOMS = ["dizziness", "chest tightness", "shortness of breath", "cough", "fever", "abdominal pain", "nausea",
               "insomnia", "palpitations", "fatigue", "diarrhea", "headache", "joint pain", "rash", "blurred vision"]
EN_DISEASES = ["hypertension", "type 2 diabetes", "coronary artery disease", "chronic gastritis", "bronchitis",
               "pneumonia", "hypothyroidism", "gout", "anemia", "migraine", "asthma", "fatty liver disease"]
EN_SENTENCES = [
    "A {age}-year-old {sexen} presented with {sym} for {dur} days.", "The patient has a history of {dis} for {years} years.",
    "Physical examination showed blood pressure of {bp} mmHg and heart rate of {hr} beats per minute.",
    "Laboratory tests revealed fasting glucose of {val} mmol/L.", "The recommended dose of {drug} is {dose} mg {times} times daily.",
    "Common side effects of {drug} include {sym} and {sym2}.", "Patients with {dis} should follow a low-salt diet and exercise regularly.",
    "Hi doctor, I have had {sym} and {sym2} for {dur} days, what should I do?",
    "{drug} should be used with caution in patients with kidney or liver impairment.",
    "Seek medical care promptly if {sym} worsens or {sym2} appears.", "Further evaluation with {exam} is recommended.",
]
EN_EXAMS = ["echocardiography", "chest CT", "abdominal ultrasound", "endoscopy", "brain MRI", "an ECG"]

KINDS = ("exact", "punct_space", "width", "traditional", "char_edit", "reorder")
_PUNCT_SWAP = {"，": ", ", "。": ". ", "：": ":", "？": "?", "、": ",", ",": "，", ".": "。", "?": "？"}
_FILLER = "的了是在有和与及对并但也就都而"


@dataclass
class Corpus:
    texts: list[str]
    langs: list[str]
    clusters: list[int]
    kinds: list[str]          # original | a variant kind | hard_negative


def _s2t() -> dict[int, str]:
    return opencc_character_table("STCharacters")


def _fill(template: str, rng: random.Random, zh: bool) -> str:
    value = {
        "sex": rng.choice("男女"), "sexen": rng.choice(["man", "woman"]), "age": rng.randint(18, 88),
        "sym": rng.choice(ZH_SYMPTOMS if zh else EN_SYMPTOMS), "sym2": rng.choice(ZH_SYMPTOMS if zh else EN_SYMPTOMS),
        "dis": rng.choice(ZH_DISEASES if zh else EN_DISEASES), "drug": rng.choice(ZH_DRUGS if zh else EN_DRUGS),
        "dur": f"{rng.randint(2, 30)}天" if zh else rng.randint(2, 30), "dur2": f"{rng.randint(1, 12)}周",
        "years": rng.randint(1, 20), "bp": f"{rng.randint(100, 190)}/{rng.randint(60, 110)}", "hr": rng.randint(55, 120),
        "temp": f"{rng.randint(360, 395) / 10:.1f}", "dose": rng.choice([5, 10, 20, 25, 40, 50, 75, 100, 250, 500]),
        "times": rng.randint(1, 3), "when": rng.choice(ZH_WHEN), "weeks": rng.randint(1, 12),
        "exam": rng.choice(ZH_EXAMS if zh else EN_EXAMS), "val": f"{rng.uniform(4, 12):.1f}",
    }
    if zh and "{test}" in template:
        name, unit, low, high = rng.choice(ZH_TESTS)
        value.update(test=name, unit=unit, val=f"{rng.uniform(low, high):.1f}" if high < 20 else str(rng.randint(low, high)))
    return template.format(**value)


_NUMERIC = re.compile(r"\{(age|years|bp|hr|temp|dose|val|dur|dur2|weeks)\}")


def _document(rng: random.Random, zh: bool) -> str:
    """2–7 sentences, at least two of them carrying numbers, so that two originals are never
    near-copies of each other by chance (the ground truth counts them as different texts)."""
    pool = ZH_SENTENCES if zh else EN_SENTENCES
    numeric = [t for t in pool if _NUMERIC.search(t)]
    templates = [rng.choice(numeric), rng.choice(numeric)] + [rng.choice(pool) for _ in range(rng.randint(0, 5))]
    rng.shuffle(templates)
    sentences = [_fill(t, rng, zh) for t in templates]
    return "".join(sentences) if zh else " ".join(sentences)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[。？！])|(?<=[.?!])\s+", text) if s]


def _numbers(text: str) -> tuple[str, ...]:
    return tuple(sorted(re.findall(r"\d+(?:\.\d+)?", text)))


def _between_digits(text: str, i: int) -> bool:
    return 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()


def variant(text: str, kind: str, rng: random.Random, zh: bool) -> str:
    if kind == "exact":
        return text
    if kind == "punct_space":
        out = "".join(_PUNCT_SWAP.get(c, c) if rng.random() < 0.5 and not _between_digits(text, i) else c
                      for i, c in enumerate(text))
        return ("  " if rng.random() < 0.5 else "") + out.replace(" ", "  " if rng.random() < 0.5 else " ") + "\n"
    if kind == "width":
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and rng.random() < 0.7 else c for c in text)
    if kind == "traditional":
        return text.translate(_s2t())
    if kind == "reorder":
        parts = _sentences(text)
        i = rng.randrange(len(parts) - 1)
        parts[i], parts[i + 1] = parts[i + 1], parts[i]
        return "".join(parts) if zh else " ".join(parts)
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        positions = [i for i, c in enumerate(chars) if c.isalpha()]
        i = rng.choice(positions)
        edit = rng.random()
        filler = rng.choice(_FILLER) if zh else rng.choice("abcdefghijklmnopqrstuvwxyz")
        if edit < 0.4:
            chars[i] = filler
        elif edit < 0.7:
            chars.insert(i, filler)
        else:
            del chars[i]
    return "".join(chars)


def hard_negative(text: str, rng: random.Random) -> str | None:
    """The same text with one number changed (dose, count, lab value); None if it has no number."""
    numbers = list(re.finditer(r"\d+(?:\.\d+)?", text))
    if not numbers:
        return None
    match = rng.choice(numbers)
    old = match.group()
    new = old
    while new == old:
        new = (f"{float(old) + rng.choice([-1, 1]) * rng.uniform(0.2, 3):.1f}" if "." in old
               else str(max(1, int(old) + rng.choice([-1, 1]) * rng.randint(1, max(2, int(old) // 2)))))
    return text[:match.start()] + new + text[match.end():]


def generate(docs: int = 200_000, seed: int = 7, zh_share: float = 0.8, dup_share: float = 0.25,
             negative_share: float = 0.04) -> Corpus:
    """`docs` documents: originals, then planted variants (≈ dup_share of all documents) and hard
    negatives (≈ negative_share), shuffled. Deterministic for a seed."""
    rng = random.Random(seed)
    originals = int(docs / (1 + dup_share * 1.0 + negative_share))
    texts: list[str] = []
    langs: list[str] = []
    clusters: list[int] = []
    kinds: list[str] = []
    seen: set[str] = set()
    numbers: dict[tuple[str, ...], int] = {}
    while len(texts) < originals:
        zh = rng.random() < zh_share
        text = _document(rng, zh)
        if text in seen:
            continue
        seen.add(text)
        i = len(texts)
        numbers.setdefault(_numbers(text), i)
        texts.append(text)
        langs.append("zh" if zh else "en")
        clusters.append(i)
        kinds.append("original")
    next_cluster = originals
    while len(texts) < docs:
        base = rng.randrange(originals)
        zh = langs[base] == "zh"
        if rng.random() < negative_share / (dup_share + negative_share):
            text = hard_negative(texts[base], rng)
            # A hard negative must be near only its own original: its numbers may not be those of
            # another document (two texts from the same templates could then be one text).
            if text is None or text in seen or numbers.get(_numbers(text), base) != base:
                continue
            seen.add(text)
            numbers[_numbers(text)] = len(texts)
            texts.append(text)
            clusters.append(next_cluster)
            next_cluster += 1
            kinds.append("hard_negative")
        else:
            kind = rng.choice([k for k in KINDS if zh or k != "traditional"])
            if kind == "reorder" and len(_sentences(texts[base])) < 2 or kind == "char_edit" and len(texts[base]) < 120:
                continue
            texts.append(variant(texts[base], kind, rng, zh))
            clusters.append(clusters[base])
            kinds.append(kind)
        langs.append(langs[base])
    order = list(range(len(texts)))
    rng.shuffle(order)
    return Corpus([texts[i] for i in order], [langs[i] for i in order], [clusters[i] for i in order],
                  [kinds[i] for i in order])


def to_table(corpus: Corpus, sources: int = 5) -> pa.Table:
    """The corpus as the rows the cross-source stages receive (pretrain task), with ground truth."""
    n = len(corpus.texts)
    source = [f"source_{i % sources}" for i in range(n)]
    return pa.table({
        "text": corpus.texts, "id": [f"{s}/{i:08d}" for i, s in enumerate(source)], "source": source,
        "split": ["train"] * n, "lang": ["und"] * n, "lang_score": pa.array([0.0] * n, type=pa.float32()),
        "license": ["cc-by-4.0"] * n, "dup_count": pa.array([1] * n, type=pa.int32()), "meta": ["{}"] * n,
        "_row": pa.array(range(n), type=pa.int64()), "_priority": pa.array([50 + i % sources for i in range(n)], type=pa.int32()),
        "_truth_cluster": pa.array(corpus.clusters, type=pa.int64()), "_truth_kind": corpus.kinds,
    })


# --------------------------------------------------------------------------- scaled mirror
#
# The demo mirror with eight sources scaled up, one per format family that carries volume upstream:
# source id, share of the records, the file it replaces (its catalogue path) and how records are written.

Record = tuple[str, str]          # (prompt, response) or (text, "") for pretrain
SCALED: list[tuple[str, float, str, str]] = [
    ("medicalgpt_sft_medical", 0.20, "data/sft/medical_sft_1K_format.jsonl", "sharegpt_jsonl"),
    ("huatuo_encyclopedia_qa", 0.20, "train_datasets.jsonl", "huatuo_jsonl"),
    ("chatmed_consult", 0.15, "ChatMed_Consult-v0.3.json", "query_response_jsonl"),
    ("medalpaca_medical_meadow", 0.10, "medical_meadow_small.json", "alpaca_json_array"),
    ("toyhom_dialogue", 0.10, "样例_内科5000-6000.csv", "toyhom_csv_gbk"),
    ("shibing624_medical_pretrain", 0.15, "pretrain/train_encyclopedia.json", "text_jsonl"),
    ("medicalgpt_pretrain", 0.05, "data/pretrain/fever.txt", "text_lines"),
    ("medicalgpt_reward", 0.05, "data/reward/dpo_zh_500.jsonl", "preference_jsonl"),
]
PRETRAIN_WRITERS = {"text_jsonl", "text_lines"}


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _write_records(path: Path, kind: str, records: Iterator[Record]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "toyhom_csv_gbk":
        with path.open("w", encoding="gb18030", newline="") as out:
            out.write("department,title,ask,answer\n")
            for prompt, response in records:
                title = prompt.split("，")[0].replace(",", "，").replace('"', "'")[:30]
                ask, answer = (t.replace('"', '""') for t in (prompt, response))
                out.write(f'内科,{title},"{ask}","{answer}"\n')
        return
    line: dict[str, Callable[[str, str], str]] = {
        "sharegpt_jsonl": lambda p, r: _dump({"conversations": [{"from": "human", "value": p},
                                                                {"from": "gpt", "value": r}]}),
        "huatuo_jsonl": lambda p, r: _dump({"questions": [[p]], "answers": [r]}),
        "query_response_jsonl": lambda p, r: _dump({"query": p, "response": r}),
        "text_jsonl": lambda p, r: _dump({"text": p}),
        "text_lines": lambda p, r: p.replace("\n", " "),
        "preference_jsonl": lambda p, r: _dump({"conversations": [{"from": "human", "value": p}], "chosen": r,
                                                "rejected": r[: len(r) // 2]}),
    }.get(kind)  # type: ignore[assignment]
    with path.open("w", encoding="utf-8") as out:
        if kind == "alpaca_json_array":
            out.write("[\n")
            for i, (prompt, response) in enumerate(records):
                out.write(("" if i == 0 else ",\n") + _dump({"instruction": "Answer this question truthfully",
                                                             "input": prompt, "output": response}))
            out.write("\n]\n")
            return
        for prompt, response in records:
            out.write(line(prompt, response) + "\n")


def _records(count: int, pool: list[str], rng: random.Random, pretrain: bool) -> Iterator[Record]:
    """`count` records drawn from `pool`; about 15% are exact or near copies of an earlier record
    (both sides varied the same way), so that dedup has real work at any scale."""
    made: list[Record] = []
    for _ in range(count):
        if made and rng.random() < 0.15:
            prompt, response = rng.choice(made[-2000:])
            kind = rng.choice(["exact", "punct_space", "width", "char_edit"])
            zh = not prompt.isascii()
            prompt = variant(prompt, kind, rng, zh) if kind != "char_edit" or len(prompt) >= 120 else prompt
            response = variant(response, kind, rng, zh) if response and (kind != "char_edit" or len(response) >= 120) \
                else response
        elif pretrain:
            prompt, response = rng.choice(pool) + rng.choice(pool), ""
        else:
            prompt, response = rng.choice(pool), rng.choice(pool) + rng.choice(pool)
        made.append((prompt, response))
        if len(made) > 4000:
            del made[:2000]
        yield prompt, response


def scaled_mirror(out: Path, records: int = 1_000_000, seed: int = 7, demo: Path = Path("examples/mirror")) -> int:
    """Write the demo mirror with the SCALED sources holding `records` records in all; returns the
    bytes written. Deterministic for a seed. Sources not scaled are copies of the demo's."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(demo, out)
    rng = random.Random(seed)
    pool = generate(min(200_000, max(2_000, records // 5)), seed).texts
    written = 0
    for source_id, share, relpath, kind in SCALED:
        path = out / source_id / relpath
        _write_records(path, kind, _records(int(records * share), pool, rng, kind in PRETRAIN_WRITERS))
        written += path.stat().st_size
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench/data/corpus.parquet")
    parser.add_argument("--mirror", type=Path, help="write a scaled mirror of --docs records here instead")
    args = parser.parse_args()
    if args.mirror:
        size = scaled_mirror(args.mirror, args.docs, args.seed)
        print(f"{args.mirror}: {args.docs} records, {size / 1e6:.0f} MB in the scaled sources")
        return
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(generate(args.docs, args.seed)), args.out, row_group_size=20_000)


if __name__ == "__main__":
    main()
