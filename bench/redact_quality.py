"""Benchmark of the redact and quality stages (issue 13), written as a section of bench/RESULTS.md.

    .venv/bin/python -m bench.redact_quality               # 50,000 SFT rows
    .venv/bin/python -m bench.redact_quality --docs 200000

A seeded generator writes realistic Chinese and English consultation rows (a question, an answer of
clinical sentences) and plants, with ground truth:
- personal data of every type the stage knows, each value unique in its row;
- clinical look-alikes that must survive: doses, lab values, blood pressure, dates, ages, ICD codes,
  drug approval numbers, 11-digit specimen numbers after 标本号 (mobile-shaped), 18-digit numbers
  with a valid birth date but a wrong check digit in non-ID contexts, 15-digit numbers with an
  impossible birth date;
- broken and spam rows (one per quality reason) among good ones.
The stages are the ones the build uses (`default_stages("sft", BuildConfig())`), after normalise.
Throughput is timed on one process and on two (spawned workers, half of the batches each, started
together), with normalise on the same batches as the baseline of the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from etl.catalog import BuildConfig
from etl.stages.base import Stage, settle
from etl.stages.normalise import Normalise
from etl.stages.pipeline import default_stages

TURN = pa.struct([("role", pa.string()), ("content", pa.string())])
BATCH = 10_000
SPARSE_PII = 0.05          # share of rows with personal data in the second throughput set
START, END = "<!-- redact_quality:start -->", "<!-- redact_quality:end -->"

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁沈姚卢姜崔钟谭陆汪范金石廖贾夏"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英",
         "华", "建国", "志强", "桂英", "小红", "海燕", "文博", "晓东", "玉兰", "国庆", "子涵", "雨轩"]
EN_FIRST = ["John", "Emily", "Michael", "Sarah", "David", "Laura", "James", "Anna", "Robert", "Linda"]
EN_LAST = ["Smith", "Carter", "Brown", "Wilson", "Taylor", "Moore", "Clark", "Lewis", "Walker", "Young"]
DRUGS_ZH = ["阿司匹林", "二甲双胍", "布洛芬", "阿莫西林", "氨氯地平", "奥美拉唑", "头孢克肟", "氯吡格雷", "阿托伐他汀"]
DRUGS_EN = ["aspirin", "metformin", "ibuprofen", "amoxicillin", "amlodipine", "omeprazole", "atorvastatin"]
ZH_FILLER = ["最近一周出现头晕乏力，", "夜间咳嗽加重，", "饭后上腹部隐痛，", "既往有高血压病史五年，", "建议低盐低脂饮食，",
             "注意休息，避免劳累，", "必要时到医院复查，", "如症状加重请及时就诊，", "目前考虑慢性胃炎可能，"]
EN_FILLER = ["The symptoms started last week. ", "Please avoid heavy meals. ", "Follow up with your physician. ",
             "This is most likely a viral infection. ", "Drink plenty of fluids and rest. "]
ZH_QUESTIONS = ["医生您好，我最近总是头晕，血压偏高，该怎么办？", "孩子发烧三天了，吃什么药好？", "体检发现血糖高，需要治疗吗？",
                "胃疼反复发作半年，是不是胃炎？", "咳嗽两周不好，要不要拍片？"]
EN_QUESTIONS = ["Hi doctor, my blood pressure is high lately, what should I do?", "I have had a cough for two weeks.",
                "My fasting sugar was high at a check-up, do I need treatment?"]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _id18(rng: random.Random, valid: bool) -> str:
    area = rng.choice(["110105", "310104", "440305", "510107", "330106", "420102"])
    birth = f"{rng.randint(1940, 2010)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = area + birth + _digits(rng, 3)
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789" if c != check])
    return body + check


def _mobile(rng: random.Random) -> str:
    number = rng.choice(["13", "15", "17", "18", "19"]) + str(rng.randint(0, 9)) + _digits(rng, 8)
    style = rng.randrange(5)
    if style == 1:
        number = f"{number[:3]}-{number[3:7]}-{number[7:]}"
    elif style == 2:
        number = f"{number[:3]} {number[3:7]} {number[7:]}"
    return rng.choice(["", "", "+86 ", "+86", "0086 ", "86-"]) + number


def _pii(rng: random.Random) -> tuple[str, str, str]:
    """(kind, value, sentence holding it) of one random personal-data item, Chinese or English."""
    choice = rng.randrange(17)
    if choice == 0:
        v = _mobile(rng)
        return "PHONE", v, f"有问题可以打我电话{v}，"
    if choice == 1:
        code = rng.choice(["010", "021", "020"])
        v = rng.choice([f"{code}-{rng.randint(2, 8)}{_digits(rng, 7)}", f"({code}){rng.randint(2, 8)}{_digits(rng, 7)}"])
        v += rng.choice(["", f"转{rng.randint(100, 9999)}"])
        return "PHONE", v, f"门诊办公室座机{v}，"
    if choice == 2:
        v = rng.choice([f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{_digits(rng, 4)}",
                        f"{rng.randint(201, 989)}-{rng.randint(200, 999)}-{_digits(rng, 4)}",
                        f"+44 20 {rng.randint(7000, 8999)} {_digits(rng, 4)}", f"07{_digits(rng, 3)} {_digits(rng, 6)}"])
        return "PHONE", v, f"You can reach the clinic at {v} on weekdays. "
    if choice == 3:
        v = _id18(rng, True)
        return "ID_NUMBER", v, rng.choice([f"身份证号{v}，", f"证件：{v}，", f"患者信息 {v} 已登记，"])
    if choice == 4:
        v = f"SSN: {_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 4)}"
        return "ID_NUMBER", v[5:], f"Insurance form lists {v}. "
    if choice == 5:
        user = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 9))) + _digits(rng, 2)
        v = f"{user}@{rng.choice(['qq.com', '163.com', 'gmail.com', 'hospital.org.cn'])}"
        return "EMAIL", v, rng.choice([f"报告发到邮箱{v}，", f"Email me at {v} please. "])
    if choice == 6:
        v = rng.choice([f"https://www.haodf.com/doctor/{_digits(rng, 6)}.html", f"http://m.clinic{_digits(rng, 3)}.cn/q?id={_digits(rng, 5)}",
                        f"www.yisheng{_digits(rng, 3)}.com"])
        return "URL", v, f"详见 {v} ，"
    if choice == 7:
        v = ".".join(str(rng.randint(1, 254)) for _ in range(4))
        return "IP", v, f"登录地址 {v} 打不开，"
    if choice == 8:
        cue = rng.choice(["微信", "微信号：", "VX:", "wx ", "QQ", "QQ：", "扣扣 ", "微博 "])
        v = rng.choice("abcdefghjkmnpqrstuvwxyz") + "".join(rng.choice("abcdefghjkmnpqrstuvwxyz0123456789_") for _ in range(rng.randint(5, 12)))
        if cue.startswith(("QQ", "扣扣")):
            v = str(rng.randint(1, 9)) + _digits(rng, rng.randint(5, 9))
        return "SOCIAL_ID", v, f"我的{cue}{v}，"
    if choice in (9, 10):
        cue = rng.choice(["住院号：", "门诊号", "病案号 ", "病历号：", "床号", "登记号：", "MRN: "])
        v = (rng.choice(["", "MZ", "ZY"]) if cue in ("门诊号", "住院号：") else "") + _digits(rng, rng.randint(2 if cue == "床号" else 6, 10))
        return "RECORD_NO", cue + v, f"{cue}{v}，"          # short bed numbers recur: judged with the cue
    if choice == 11:
        v = rng.choice(SURNAMES) + rng.choice(GIVEN)
        return "NAME", v, f"患者{v}，{rng.choice('男女')}，{rng.randint(18, 90)}岁，"
    if choice == 12:
        v = rng.choice(SURNAMES) + rng.choice(GIVEN)
        return "NAME", v, f"祝早日康复。\n——{v}{rng.choice(['医生', '大夫', '主任'])}\n"
    if choice == 13:
        v = rng.choice(SURNAMES) + rng.choice(GIVEN)
        return "NAME", v, f"接诊医生：{v}\n"
    if choice == 14:
        v = f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"
        return "NAME", v, f"Regards, Dr. {v}. "
    if choice == 15:
        v = f"{_id18(rng, True)[:6]}{rng.randint(40, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{_digits(rng, 3)}"
        return "ID_NUMBER", v, f"老身份证 {v}，"
    v = f"400-{_digits(rng, 3)}-{_digits(rng, 4)}"
    return "PHONE", v, f"全国服务电话{v}，"


def _lookalike(rng: random.Random) -> tuple[str, str]:
    """(class, text) of one clinical number that must survive redaction."""
    choice = rng.randrange(10)
    if choice == 0:
        return "dose", rng.choice([f"{rng.choice(DRUGS_ZH)}{rng.choice([5, 10, 20, 25, 50, 100, 250, 500])}mg",
                                   f"{rng.choice([0.1, 0.25, 0.5, 1])}g {rng.choice(['qd', 'bid', 'tid'])}",
                                   f"{rng.choice(DRUGS_EN)} {rng.choice([250, 500, 850, 1000])} mg twice daily"])
    if choice == 1:
        return "lab", rng.choice([f"空腹血糖{rng.randint(40, 150) / 10}mmol/L", f"WBC {rng.randint(30, 200) / 10}×10^9/L",
                                  f"HbA1c {rng.randint(50, 120) / 10}%", f"ALT {rng.randint(10, 300)}U/L",
                                  f"肌酐{rng.randint(40, 400)}μmol/L", f"PLT {rng.randint(50, 450)}×10^9/L"])
    if choice == 2:
        return "blood_pressure", rng.choice([f"{rng.randint(90, 200)}/{rng.randint(50, 120)}mmHg",
                                             f"BP {rng.randint(90, 200)}/{rng.randint(50, 120)} mmHg"])
    if choice == 3:
        y, m, d = rng.randint(2000, 2024), rng.randint(1, 12), rng.randint(1, 28)
        return "date", rng.choice([f"{y}-{m:02d}-{d:02d}", f"{y}年{m}月{d}日", f"{m:02d}/{d:02d}/{y}", f"{y}.{m:02d}.{d:02d}",
                                   f"{y}-{m:02d}-{d:02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"])
    if choice == 4:
        return "age", rng.choice([f"{rng.randint(1, 99)}岁", f"{rng.randint(18, 90)}-year-old", f"年龄{rng.randint(1, 99)}"])
    if choice == 5:
        return "icd", rng.choice(["I10", "E11.9", "J18.9", "K29.7", "ICD-10 I25.1", "C34.90", "N18.3"])
    if choice == 6:
        return "approval_no", f"国药准字{rng.choice('HZSJ')}{rng.choice(['1', '2'])}0{_digits(rng, 6)}"
    if choice == 7:
        mobile_like = rng.choice(["13", "15", "18"]) + _digits(rng, 9)
        return "specimen_no", f"{rng.choice(['标本号', '标本号：', '样本号 ', '条码号'])}{mobile_like}"
    if choice == 8:
        return "id_wrong_check", f"{rng.choice(['检验流水号', '订单编号', '仪器序列号 '])}{_id18(rng, False)}"
    return "id15_bad_date", f"检测批次 {_id18(rng, True)[:6]}{rng.randint(40, 99)}{rng.randint(13, 19)}{rng.randint(1, 28):02d}{_digits(rng, 3)}"


@dataclass
class Row:
    question: str
    answer: str
    reason: str | None                                      # ground-truth quality reason (None: good)
    pii: list[tuple[str, str]] = field(default_factory=list)          # (kind, value)
    lookalikes: list[tuple[str, str]] = field(default_factory=list)   # (class, text)


def _answer(rng: random.Random, row: Row, zh: bool, pii_rate: float) -> str:
    parts = []
    for _ in range(rng.randint(2, 5)):
        cls, text = _lookalike(rng)
        row.lookalikes.append((cls, text))
        parts.append(rng.choice(ZH_FILLER if zh else EN_FILLER))
        parts.append(f"{text}，" if zh else f"{text}. ")
    contact = False
    for _ in range(rng.choice([1, 1, 2]) if rng.random() < pii_rate else 0):
        kind, value, sentence = _pii(rng)
        if kind in ("PHONE", "SOCIAL_ID") and contact:
            continue                                         # a good answer offers one contact at most
        contact = contact or kind in ("PHONE", "SOCIAL_ID")
        row.pii.append((kind, value))
        parts.insert(rng.randrange(len(parts) + 1), sentence)
    return "".join(parts).strip()


def _broken(rng: random.Random, reason: str, question: str, good: str) -> str:
    if reason == "mojibake":
        if sum(ord(c) > 127 for c in good) * 4 < len(good):      # English: cp1252 leaves ASCII as it is
            return "锟斤拷" * rng.randint(3, 8) + good[:20]
        return rng.choice(["锟斤拷" * rng.randint(3, 8) + good[:20], good.encode("utf-8").decode("cp1252", errors="replace"),
                           "\ufffd" * rng.randint(5, 20) + good[:30]])
    if reason == "char_repetition":
        return rng.choice(["哈" * rng.randint(30, 80), "好的" * rng.randint(20, 40), "谢谢医生！" * rng.randint(10, 20)])
    if reason == "line_repetition":
        return "\n".join([rng.choice(["多喝热水", "注意休息，按时吃药", "Drink more water."])] * rng.randint(6, 12) + ["祝好"])
    if reason == "short_answer":
        return rng.choice(["。。", "？？？", "……", " ", "!"])
    if reason == "filler_answer":
        return rng.choice(["同上", "谢谢！", "不知道。", "不清楚", "Thanks!", "同上同上"])
    if reason == "advertising":
        return (f"我院专家团队专治各种疑难杂症，无效退款！咨询热线{_mobile(rng)}，加微信"
                f"{'yy' + _digits(rng, 6)}，免费咨询，扫码关注公众号。")
    return question                                            # echo


def generate_rows(n: int, seed: int, broken_share: float = 0.1, pii_rate: float = 0.6) -> list[Row]:
    """`pii_rate`: the share of good rows that get personal data (one or two items)."""
    rng = random.Random(seed)
    reasons = ["mojibake", "char_repetition", "line_repetition", "short_answer", "filler_answer", "advertising", "echo"]
    rows = []
    for _ in range(n):
        zh = rng.random() < 0.8
        question = rng.choice(ZH_QUESTIONS if zh else EN_QUESTIONS)
        row = Row(question, "", None)
        good = _answer(rng, row, zh, pii_rate)
        if rng.random() < broken_share:
            row.reason = rng.choice(reasons)
            row.answer = _broken(rng, row.reason, question, good)
            row.pii, row.lookalikes = [], []
        else:
            row.answer = good
        rows.append(row)
    return rows


def to_batches(rows: list[Row]) -> list[pa.RecordBatch]:
    batches = []
    for start in range(0, len(rows), BATCH):
        part = rows[start:start + BATCH]
        n = len(part)
        messages = pa.array([[{"role": "user", "content": r.question}, {"role": "assistant", "content": r.answer}]
                             for r in part], type=pa.list_(TURN))
        batches.append(pa.RecordBatch.from_pydict({
            "id": [f"bench/{start + i}" for i in range(n)], "source": ["bench_zh" if "\u4e00" <= r.question[0] <= "\u9fff"
                                                                       else "bench_en" for r in part],
            "split": ["train"] * n, "messages": messages, "lang": ["und"] * n,
            "lang_score": pa.array([0.0] * n, pa.float32()), "license": ["mit"] * n,
            "dup_count": pa.array([1] * n, pa.int32()), "meta": ["{}"] * n,
            "_row": pa.array(range(start, start + n), pa.int64()), "_priority": pa.array([50] * n, pa.int32())}))
    return batches


def build_stages() -> list[Stage]:
    """Redact and quality exactly as the build makes them (default settings)."""
    return [s for s in default_stages("sft", BuildConfig()) if s.name in ("redact", "quality")]


def _time_stages(batches: list[pa.RecordBatch]) -> tuple[int, float]:
    stages = build_stages()
    start = time.perf_counter()
    docs = 0
    for batch in batches:
        for stage in stages:
            batch, _ = settle(stage.apply(batch))
        docs += batch.num_rows
    return docs, time.perf_counter() - start


def _time_normalise(batches: list[pa.RecordBatch]) -> float:
    stage = Normalise("sft")
    start = time.perf_counter()
    for batch in batches:
        stage.apply(batch)
    return time.perf_counter() - start


def evaluate(rows: list[Row], batches: list[pa.RecordBatch]) -> dict:
    """Recall/precision per PII type, false redactions per look-alike class, drops against truth."""
    redact, quality = build_stages()
    pii_total: Counter[str] = Counter()
    pii_found: Counter[str] = Counter()
    placeholders: Counter[str] = Counter()
    true_pos: Counter[str] = Counter()
    look_total: Counter[str] = Counter()
    look_broken: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    drops: Counter[tuple[str, str]] = Counter()
    offset = 0
    for batch in batches:
        batch = redact.apply(batch)
        answers = [m[1]["content"] for m in batch.column("messages").to_pylist()]
        marked = quality.apply(batch).column("_drop").to_pylist()
        for i, (answer, reason) in enumerate(zip(answers, marked, strict=True)):
            row = rows[offset + i]
            drops[(row.reason or "good", reason or "kept")] += 1
            planted: Counter[str] = Counter()
            for kind, value in row.pii:
                pii_total[kind] += 1
                planted[kind] += 1
                if value not in answer:
                    pii_found[kind] += 1
                else:
                    examples.setdefault(f"missed {kind}", []).append(value)
            for kind in planted | Counter({k: 0 for k in ("PHONE", "ID_NUMBER", "EMAIL", "URL", "IP", "RECORD_NO",
                                                           "SOCIAL_ID", "NAME")}):
                got = answer.count(f"<{kind}>")
                placeholders[kind] += got
                true_pos[kind] += min(got, planted[kind])
                if got > planted[kind]:
                    examples.setdefault(f"extra {kind}", []).append(answer[:160])
            for cls, text in row.lookalikes:
                look_total[cls] += 1
                if text not in answer:
                    look_broken[cls] += 1
                    examples.setdefault(f"broken {cls}", []).append(text)
        offset += batch.num_rows
    return {"pii_total": pii_total, "pii_found": pii_found, "placeholders": placeholders, "true_pos": true_pos,
            "look_total": look_total, "look_broken": look_broken, "drops": drops, "examples": examples}


_BARRIER = None


def _init(barrier: object) -> None:
    global _BARRIER
    _BARRIER = barrier


def _timed_part(args: tuple[str, int, int]) -> tuple[float, float, int]:
    """One worker: its share of the batches (read from an Arrow file, not sent through a pipe), a
    warm-up, then the timed run once every worker is ready."""
    path, part, parts = args
    with pa.memory_map(path) as source:
        batches = list(pa.ipc.open_file(source).read_all().to_batches(max_chunksize=BATCH))[part::parts]
    _time_stages([batches[0].slice(0, 100)])
    _BARRIER.wait()  # type: ignore[attr-defined]
    start = time.time()
    docs, _ = _time_stages(batches)
    return start, time.time(), docs


def throughput(batches: list[pa.RecordBatch], scratch: Path) -> dict:
    """docs/s of redact + quality on one process and on two (half of the batches each, wall time from
    the first start to the last end), and of normalise on one process as the baseline of the same run."""
    docs, one = _time_stages(batches)
    normalise = _time_normalise(batches)
    path = scratch / "batches.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batches[0].schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    with context.Pool(2, initializer=_init, initargs=(barrier,)) as pool:
        runs = pool.map(_timed_part, [(str(path), 0, 2), (str(path), 1, 2)])
    two = max(end for _, end, _ in runs) - min(start for start, _, _ in runs)
    return {"docs": docs, "one": docs / one, "two": sum(n for _, _, n in runs) / two, "normalise": docs / normalise,
            "load": os.getloadavg()[0]}


def section(n: int, seed: int, result: dict, speed: dict) -> str:
    kinds = ("PHONE", "ID_NUMBER", "EMAIL", "URL", "IP", "RECORD_NO", "SOCIAL_ID", "NAME")
    target_kinds = ("PHONE", "ID_NUMBER", "EMAIL", "RECORD_NO", "SOCIAL_ID")
    recall = {k: result["pii_found"][k] / max(result["pii_total"][k], 1) for k in kinds}
    precision = {k: result["true_pos"][k] / max(result["placeholders"][k], 1) for k in kinds}
    looks = sum(result["look_total"].values())
    broken = sum(result["look_broken"].values())
    low = min(recall[k] for k in target_kinds)
    drops = result["drops"]
    lines = [START, f"## Privacy and quality stages (redact + quality): {n:,} SFT rows", "",
             f"Generated by `python -m bench.redact_quality --docs {n} --seed {seed}` (also run by `make bench`) on "
             f"{os.cpu_count()} cores, Python {platform.python_version()}. **The machine was shared with several "
             "other jobs during this run and is noisy: throughput figures can be 30% or more below an idle "
             "machine's; compare them with the normalise baseline measured in the same run.** 80% Chinese, 20% "
             "English rows; 10% broken or spam rows (one quality reason each); the stages are the build's own "
             "(default settings), run after normalise. The generator's formats were written alongside the rules: "
             "perfect scores mean the rules do what docs/PRIVACY.md claims on these shapes, not that recall on "
             "real scraped text is 1.0 (names outside the covered contexts and unusual formats are not planted).",
             "", "### Targets", "",
             "| target | measured | met |", "|---|---|---|",
             f"| recall ≥ 0.99 on phones, ID numbers, e-mails, cue-word ids | lowest {low:.4f} "
             f"({', '.join(f'{k} {recall[k]:.4f}' for k in target_kinds)}) | {'yes' if low >= 0.99 else 'no'} |",
             f"| false redaction of clinical numbers ≤ 1 in 10,000 | {broken} of {looks:,} "
             f"({broken / max(looks, 1) * 10_000:.2f} in 10,000) | {'yes' if broken / max(looks, 1) <= 1e-4 else 'no'} |",
             f"| both stages ≥ 50k docs/s on 2 cores | {speed['two']:,.0f} docs/s on the planted set, "
             f"{speed['sparse']['two']:,.0f} at {SPARSE_PII:.0%} PII rows | "
             f"{'yes' if min(speed['two'], speed['sparse']['two']) >= 50_000 else 'no'} |", "",
             "### Redaction per type", "", "| type | planted | recall | placeholders | precision |", "|---|---:|---:|---:|---:|"]
    for k in kinds:
        lines.append(f"| `<{k}>` | {result['pii_total'][k]:,} | {recall[k]:.4f} | {result['placeholders'][k]:,} | "
                     f"{precision[k]:.4f} |")
    lines += ["", "### Clinical look-alikes (must survive)", "", "| class | planted | redacted by mistake |", "|---|---:|---:|"]
    for cls in sorted(result["look_total"]):
        lines.append(f"| {cls} | {result['look_total'][cls]:,} | {result['look_broken'][cls]} |")
    reasons = sorted({t for t, _ in drops} - {"good"}) + ["good"]
    outcomes = sorted({o for _, o in drops} - {"kept"}) + ["kept"]
    lines += ["", "### Quality drops against ground truth", "", "Rows: ground truth; columns: the stage's decision.", "",
              "| truth \\ decision | " + " | ".join(outcomes) + " |", "|---|" + "---:|" * len(outcomes)]
    for truth in reasons:
        lines.append(f"| {truth} | " + " | ".join(f"{drops[(truth, o)]:,}" for o in outcomes) + " |")
    good_total = sum(drops[("good", o)] for o in outcomes)
    lines += ["", f"Good rows dropped: {good_total - drops[('good', 'kept')]:,} of {good_total:,}.", "",
              "### Throughput", "",
              "The planted set has personal data in 60% of its good rows (so that recall is measured on many "
              "items); a changed row also needs its matching key recomputed. The second set is the same "
              f"generator with personal data in {SPARSE_PII:.0%} of the rows, closer to scraped consultations.", "",
              "| what | planted set, docs/s | sparse set, docs/s |", "|---|---:|---:|",
              f"| redact + quality, 1 process | {speed['one']:,.0f} | {speed['sparse']['one']:,.0f} |",
              f"| redact + quality, 2 processes (wall) | {speed['two']:,.0f} | {speed['sparse']['two']:,.0f} |",
              f"| baseline: normalise, 1 process, same batches | {speed['normalise']:,.0f} | "
              f"{speed['sparse']['normalise']:,.0f} |",
              f"| redact + quality vs normalise (1 process) | {speed['one'] / speed['normalise']:.2f}× | "
              f"{speed['sparse']['one'] / speed['sparse']['normalise']:.2f}× |",
              f"| 1-minute load average after the run (2 cores) | {speed['load']:.1f} | {speed['sparse']['load']:.1f} |",
              ""]
    misses = {k: v[:3] for k, v in sorted(result["examples"].items())}
    if misses:
        lines += ["Examples of mistakes (first three per kind):", ""]
        lines += [f"- {k}: " + "; ".join(f"`{' '.join(e.split())[:100]}`" for e in v) for k, v in misses.items()]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section of RESULTS.md (between its markers), or append it."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if START in old and END in old:
        new = old[:old.index(START)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="redact + quality benchmark")
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", default="bench/RESULTS.md")
    args = parser.parse_args(argv)
    rows = generate_rows(args.docs, args.seed)
    normalise = Normalise("sft")
    batches = [normalise.apply(b) for b in to_batches(rows)]
    result = evaluate(rows, batches)
    with tempfile.TemporaryDirectory() as scratch:
        speed: dict = throughput(batches, Path(scratch))
        sparse = [normalise.apply(b) for b in to_batches(generate_rows(args.docs, args.seed + 1, pii_rate=SPARSE_PII))]
        speed["sparse"] = throughput(sparse, Path(scratch))
    text = section(args.docs, args.seed, result, speed)
    write_section(Path(args.out), text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
