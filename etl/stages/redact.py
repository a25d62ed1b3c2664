"""redact: replace personal data in every text field with typed placeholders (docs/PRIVACY.md).

Every string the row carries is rewritten: the task's text columns (pretrain `text`; the `content`
of every turn of a list<struct<..., content, ...>> column such as sft `messages` or reward `prompt`,
and `chosen`/`rejected` whether they are strings or lists of turns) and `meta`, so that no copy of
the original survives. A turn's tool calls keep their name but have their `arguments` (a JSON object
string) redacted like text: a placeholder put inside a JSON string value leaves it valid JSON, and the
few arguments a match would break (one that starts right after a backslash, `\\nname@x.com`) are
redacted again on their decoded string values and re-encoded. Other struct fields (roles) are kept.

How it runs: all strings of a batch are gathered into one flat Arrow array and each rule is one
`str.replace_all` over it in polars (Rust regex, no per-row Python). Rules that need a check (the
resident ID check digit, a legacy ID's birth date) find their candidates vectorised and verify only
those rows in Python. Rust regex has no look-around, so boundaries use the ASCII word boundary
`(?-u:\\b)` (a digit run never starts or ends inside a longer run of letters, digits or `_`), and
numbers after a cue word that are not personal data (标本号 specimen numbers, 批号, 国药准字) are
shielded first by a marker that makes them part of a word, then unshielded at the end.

Counts: the stage adds `_n_<TYPE>` (placeholders inserted into that row) for the executor to sum
per source (etl.stages.base.settle), so the counts come out of the batches wherever `apply` runs.
It also recomputes `_key`/`_len` of the rows it changed, so copies differing only in a phone number
get one matching key (DESIGN §5: redaction comes before dedup). No state is kept between batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from etl.stages.base import COUNT_PREFIX, Stage
from etl.stages.text import combined, row_text_series, text_columns
from etl.textnorm import match_keys

PLACEHOLDERS = ("PHONE", "ID_NUMBER", "EMAIL", "URL", "IP", "RECORD_NO", "SOCIAL_ID", "NAME")

_B = r"(?-u:\b)"                      # ASCII word boundary: Chinese characters count as non-word
_SHIELD = "\ue00f_"                   # private-use mark + `_`: glues a kept number into a "word"
_SEP = r"[：:＃#\s]*(?:是|为|號|号|No\.?|no\.?|ID|id)?[：:＃#\s]*"

# Common surnames (173 single, 9 double) for the name rules; double surnames first.
_SURNAMES = ("欧阳|司马|诸葛|上官|东方|皇甫|令狐|慕容|司徒|"
             "[王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏"
             "魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
             "邵万钱严覃武戴莫孔向汤柳常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左"
             "柴甘祝包宁尚符舒阮纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柯房鲍艾楚]")
# Characters that end a name candidate: words that follow a surname-like character in ordinary text
# ("全科医生", "马上找医生", "高年资医生") rather than given-name characters.
_NOT_GIVEN = ("科院部室诊疗治家的了是和与及或在为请问说看也都就很要会能可这那个们医生师护士专主任教授病患"
              "者某先女男老大夫您你我他她它年月日岁天号床区楼层门急住上下找去到来给跟向让叫对把被将从"
              "院所站中心级型类种次名位资深职称")
_GIVEN = f"[\\p{{Han}}--[{_NOT_GIVEN}]]"
_NAME = f"(?:{_SURNAMES}){_GIVEN}{{1,2}}"
_TITLE = "(?:副?主任医师|主治医师|医师|医生|大夫|副?主任|副?教授|护士长)"


# The characters of a URL's rest (ASCII only, so it stops at Chinese text), not ending in punctuation.
_URL_CHARS = r"(?:[A-Za-z0-9\-._~:/?#@!$&*+,;=%]*[A-Za-z0-9/_\-=#%&])?"


@dataclass(frozen=True)
class Rule:
    """One regex replacement; `kind` is the placeholder it inserts (documented in docs/PRIVACY.md)."""

    name: str
    kind: str
    pattern: str
    replacement: str


def _rule(name: str, kind: str, pattern: str, keep: str = "") -> Rule:
    """`keep`: the groups to put back around the placeholder, e.g. "${1}|${3}" (| marks its place)."""
    before, _, after = keep.partition("|")
    return Rule(name, kind, pattern, f"{before}<{kind}>{after}")


# Cue words whose number is not personal data: shielded so no phone/ID/IP rule takes it.
SHIELD_CUES = ("标本号|标本编号|样本号|样本编号|条码号|条形码|条码|检验单号|检验号|批号|生产批号|批准文号|"
               "国药准字[A-Za-z]?|国食药监械|注册证号|Lot|LOT|Specimen(?: No\\.?| ID| number)?|Accession(?: No\\.?)?")

RULES: tuple[Rule, ...] = (
    _rule("email", "EMAIL", r"[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"),
    _rule("url", "URL", r"(?i)(?:https?://|ftp://|www\.)" + _URL_CHARS),
    _rule("bare_domain", "URL", _B + r"(?:[A-Za-z0-9\-]+\.)+(?:com|cn|net|org|edu|gov|info|cc|hk|tw)"
          r"(?:\.cn)?" + _B + f"(?:/{_URL_CHARS})?"),
    _rule("ipv4", "IP", _B + r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
          r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])" + _B),
    _rule("cn_mobile", "PHONE", r"(?:(?:\+|" + _B + r"00)86[- ]?|" + _B + r"86[- ]?|" + _B + r")"
          r"1[3-9][0-9](?:[- ]?[0-9]{4}){2}" + _B),
    _rule("cn_landline", "PHONE", r"(?:(?:\+|" + _B + r"00)86[- ]?)?(?:[（(]0[1-9][0-9]{1,2}[)）]|" + _B
          + r"0[1-9][0-9]{1,2})[- ]?[2-9][0-9]{6,7}(?:\s?(?:转|-|ext\.?|x)\s?[0-9]{1,5})?" + _B),
    _rule("cn_service", "PHONE", _B + r"[48]00[- ]?[0-9]{3}[- ]?[0-9]{4}" + _B),
    _rule("us_phone", "PHONE", r"(?:\+1[-. ]?|" + _B + r"1[-. ])?(?:\([2-9][0-9]{2}\)\s?|" + _B
          + r"[2-9][0-9]{2}[-. ])[0-9]{3}[-. ][0-9]{4}" + _B),
    _rule("uk_phone", "PHONE", r"(?:\+44\s?(?:\(0\)\s?)?|" + _B + r"0)(?:7[0-9]{3}\s?[0-9]{3}\s?[0-9]{3}|"
          r"[1-9][0-9]{1,3}\s[0-9]{3,4}\s?[0-9]{3,4})" + _B),
    _rule("cue_phone", "PHONE", r"((?i:电话|座机|热线|手机|联系方式|tel|phone|fax|传真)" + _SEP + r")[2-9][0-9]{6,7}" + _B,
          "${1}|"),
    _rule("social_id_zh", "SOCIAL_ID", r"((?:微信号?|微信ID|V信|薇信|威信|QQ群?号?|qq群?号?|扣扣|企鹅号|微博号?|新浪微博|"
          r"抖音号?|快手号?|" + _B + r"(?:[VvWw][Xx]))" + _SEP + r")[A-Za-z0-9][A-Za-z0-9_\-]{4,29}" + _B, "${1}|"),
    _rule("social_id_en", "SOCIAL_ID", r"((?i:wechat|weixin|skype|whatsapp|telegram)(?:\s?(?:id|account|number))?"
          r"\s?[:：]\s*)@?[A-Za-z0-9][A-Za-z0-9_.\-]{2,29}" + _B, "${1}|"),
    _rule("id_cue", "ID_NUMBER", r"((?:身份证(?:号码|号)?|证件号码?|护照号码?|社保卡?号|医保卡?号|(?i:ssn|social security"
          r"(?: number| no\.?| #)?|passport(?: number| no\.?)?|nhs(?: number| no\.?)?))" + _SEP + r")"
          r"[A-Za-z]?[0-9][0-9\- ]{4,20}[0-9Xx]" + _B, "${1}|"),
    _rule("record_no", "RECORD_NO", r"((?:住院号|门诊号|病案号|病历号|住院病历号|床号|床位号|登记号|就诊号|就诊卡号|诊疗卡号|"
          r"门诊卡号|挂号单?号|影像号|检查号|病理号|放射号|HIS号|患者ID|病人ID|(?i:mrn|medical record(?: number| no\.?)?|"
          r"hospital(?: number| no\.?)|patient id|admission(?: number| no\.?)|bed(?: number| no\.?)))" + _SEP + r")"
          r"[A-Za-z]{0,3}[0-9][0-9A-Za-z\-]{0,19}" + _B, "${1}|"),
    # Names: a signature or contact line ("——张伟医生", "王建国主任 电话<PHONE>"), a cue with a colon
    # ("接诊医生：李红"), a record header ("患者张三，男，45岁"), an English "Dr. John Smith".
    _rule("name_signature", "NAME", r"(?m)((?:^|[：:—－\-\s（(，,。；;、])\s*)" + _NAME + "(" + _TITLE
          + r"(?:[\s，,。.!！）)]*$|\s*[（(]?(?:电话|手机|微信|联系|咨询|预约|挂号|<PHONE>|<SOCIAL_ID>|[：:])))", "${1}|${2}"),
    _rule("name_cue", "NAME", r"((?:姓名|患者姓名|病人姓名|医生姓名|签名|接诊医生|主诊医生|主治医生|责任医生|经治医生|"
          r"主管医生|主治医师|接诊医师|报告医师|审核医师)[：:]\s*)" + _NAME + r"([^\p{Han}]|$|男|女|性别|年龄)",
          "${1}|${2}"),
    _rule("name_patient", "NAME", r"((?:患者|病人|患儿)[：:]?\s*)" + _NAME + r"([，,、\s]*(?:男|女|[0-9]{1,3}岁))",
          "${1}|${2}"),
    _rule("name_dr", "NAME", _B + r"((?:Dr|DR)\.?\s)[A-Z][a-z]+(?:\s[A-Z]\.)?(?:\s[A-Z][a-z]+)?" + _B, "${1}|"),
)

# Resident ID numbers: candidates found vectorised, checked vectorised (check digit, birth date).
_ID_CANDIDATE = _B + r"[1-9][0-9]{5}(?:(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])[0-9]{5}[0-9Xx]|[0-9]{2}(?:0[1-9]|1[0-2])[0-9]{5})" + _B
_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_MONTH_DAYS = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])

# Which rows a group of rules can match at all (a cheap scan; the rules then run on those rows only).
_WEB_CUES = r"@|://|(?i:www\.)|\.(?:com|cn|net|org|edu|gov|info|cc|hk|tw)|[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]"
_CUE_WORDS = ("号|微信|V信|薇信|威信|QQ|qq|扣扣|微博|抖音|快手|身份证|证件|(?i:vx|wx|wechat|weixin|skype|whatsapp|telegram|"
              "ssn|social security|passport|nhs|mrn|medical record|hospital|patient id|admission|bed)")
_DIGIT_RUNS = r"[0-9]{5}|[0-9]{3}[-. )）]{1,2}[0-9]{3}"
_NAME_CUES = "医生|大夫|主任|医师|教授|护士长|姓名|患者|病人|患儿|签名|Dr|DR"
_GROUPS = (("web", _WEB_CUES, ("email", "url", "bare_domain", "ipv4")),
           ("cue", _CUE_WORDS, ("record_no", "id_cue", "social_id_zh", "social_id_en")),
           ("phone", _DIGIT_RUNS, ("cn_mobile", "cn_landline", "cn_service", "us_phone", "uk_phone", "cue_phone")),
           ("name", _NAME_CUES, ("name_signature", "name_cue", "name_patient", "name_dr")))
# A row none of the web, ID, cue-word and digit prefilters finds is left alone by all those rules: one
# scan of their alternation (true exactly where one of them matches) picks the rows they then scan.
_ANY_NUMBER_CUE = "|".join(f"(?:{p})" for p in (_WEB_CUES, _ID_CANDIDATE, _CUE_WORDS, _DIGIT_RUNS))
_BY_NAME = {rule.name: rule for rule in RULES}
_TAGS = "<(?:" + "|".join(PLACEHOLDERS) + ")>"


def _valid_birth(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days = _MONTH_DAYS[np.clip(month, 0, 12)] - ((month == 2) & ~leap)
    return (month >= 1) & (month <= 12) & (day >= 1) & (day <= days)


def _number(digits: np.ndarray, start: int, end: int) -> np.ndarray:
    """The integer written by columns start..end of a digit matrix."""
    return digits[:, start:end] @ (10 ** np.arange(end - start - 1, -1, -1))


def resident_ids(numbers: list[str]) -> np.ndarray:
    """Per number: an 18-digit resident ID with a valid birth date and ISO 7064 MOD 11-2 check
    digit, or a 15-digit legacy one (no check digit) with a valid birth date (19YYMMDD)."""
    ok = np.zeros(len(numbers), dtype=bool)
    for width in (18, 15):
        index = [i for i, n in enumerate(numbers) if len(n) == width and n[:width - 1].isdigit() and n.isascii()]
        if not index:
            continue
        raw = np.frombuffer("".join(numbers[i] for i in index).upper().encode(), dtype=np.uint8).reshape(-1, width)
        digits = (raw[:, :width - 1] - ord("0")).astype(np.int64)
        if width == 18:
            valid = _valid_birth(_number(digits, 6, 10), _number(digits, 10, 12), _number(digits, 12, 14))
            valid &= _ID_CHECK[(digits @ _ID_WEIGHTS) % 11] == raw[:, 17]
        else:
            last = raw[:, 14]
            valid = (_valid_birth(1900 + _number(digits, 6, 8), _number(digits, 8, 10), _number(digits, 10, 12))
                     & (last >= ord("0")) & (last <= ord("9")))
        ok[index] = valid
    return ok


def is_resident_id(number: str) -> bool:
    return bool(resident_ids([number])[0])


def _redact_ids(texts: pl.Series) -> pl.Series:
    found = texts.str.extract_all(_ID_CANDIDATE).explode().drop_nulls().unique().sort().to_list()
    verified = [n for n, ok in zip(found, resident_ids(found), strict=True) if ok]
    return texts.str.replace_many(verified, ["<ID_NUMBER>"] * len(verified)) if verified else texts


def _on_rows(texts: pl.Series, prefilter: str, step: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """`step` over the rows `prefilter` matches, the others left as they are."""
    index = np.flatnonzero(texts.str.contains(prefilter).fill_null(False).to_numpy())
    if not index.size:
        return texts
    return texts.scatter(index, step(texts.gather(index)))


def _rules(names: tuple[str, ...]) -> Callable[[pl.Series], pl.Series]:
    def step(texts: pl.Series) -> pl.Series:
        for name in names:
            texts = texts.str.replace_all(_BY_NAME[name].pattern, _BY_NAME[name].replacement)
        return texts

    return step


def _numbers(texts: pl.Series) -> pl.Series:
    """Web addresses, verified resident IDs, cue-word ids and phone numbers, each group on the rows its
    prefilter finds."""
    out = _on_rows(texts, _WEB_CUES, _rules(_GROUPS[0][2]))
    out = _on_rows(out, _ID_CANDIDATE, _redact_ids)
    for _, prefilter, rule_names in _GROUPS[1:3]:
        out = _on_rows(out, prefilter, _rules(rule_names))
    return out


def redact_strings(texts: pl.Series, names: bool = True) -> pl.Series:
    """Every rule over a string Series (nulls stay null): numbers after non-personal cue words are
    shielded; then web addresses, verified resident IDs, cue-word ids, phone numbers and names."""
    out = _on_rows(texts.clone(), SHIELD_CUES, lambda t: t.str.replace_all(
        f"({SHIELD_CUES})([：:＃#\\s]*)([0-9A-Za-z])", f"${{1}}${{2}}{_SHIELD}${{3}}"))
    out = _on_rows(out, _ANY_NUMBER_CUE, _numbers)
    if names:
        out = _on_rows(out, _GROUPS[3][1], _rules(_GROUPS[3][2]))
    return _on_rows(out, _SHIELD, lambda t: t.str.replace_all(_SHIELD, "", literal=True))


def placeholder_counts(before: pl.Series, after: pl.Series) -> dict[str, np.ndarray]:
    """Per element, how many placeholders of each type `after` gained over `before`."""
    counts = {kind: np.zeros(len(after), dtype=np.int64) for kind in PLACEHOLDERS}
    index = np.flatnonzero((before != after).fill_null(False).to_numpy())
    if not index.size:
        return counts
    for series, sign in ((after, 1), (before, -1)):
        tags = pl.DataFrame({"i": index, "tag": series.gather(index).str.extract_all(_TAGS)}).explode("tag").drop_nulls()
        for (tag,), part in tags.group_by("tag"):
            np.add.at(counts[str(tag)[1:-1]], part["i"].to_numpy(), sign)
    return {kind: np.maximum(values, 0) for kind, values in counts.items()}


# --------------------------------------------------------------------------- Arrow plumbing



@dataclass
class _Piece:
    """One string array taken out of a column, with the row each element belongs to; `is_json` marks
    the elements that are JSON text (tool call arguments)."""

    column: str
    values: pa.Array
    rows: np.ndarray
    rebuild: Callable[[pa.Array], pa.Array]
    is_json: np.ndarray


def _struct(children: list[pa.Array], of: pa.StructArray) -> pa.StructArray:
    return pa.StructArray.from_arrays(children, fields=list(of.type), mask=of.is_null() if of.null_count else None)


def _call_arguments(calls: pa.Array) -> tuple[pa.Array, np.ndarray, Callable[[pa.Array], pa.Array]] | None:
    """The `arguments` strings of a turn's tool_calls (list<struct<type, function<name, arguments>>>),
    the turn each belongs to, and how to put them back; None when the field has another shape."""
    value_type = calls.type.value_type if pa.types.is_list(calls.type) else None
    if value_type is None or not pa.types.is_struct(value_type) or value_type.get_field_index("function") < 0:
        return None
    function_type = value_type.field("function").type
    if not pa.types.is_struct(function_type) or function_type.get_field_index("arguments") < 0:
        return None
    start, end = calls.offsets[0].as_py(), calls.offsets[-1].as_py()
    offsets = pc.subtract(calls.offsets, start)
    entries = calls.values.slice(start, end - start)
    entry_children = entries.flatten()
    at_function, at_arguments = value_type.get_field_index("function"), function_type.get_field_index("arguments")
    function = entry_children[at_function]
    function_children = function.flatten()
    turns = np.repeat(np.arange(len(calls)), np.diff(offsets.to_numpy()))

    def rebuild(arguments: pa.Array) -> pa.Array:
        arguments = arguments.cast(function_type.field(at_arguments).type)
        new_function = _struct([arguments if i == at_arguments else c for i, c in enumerate(function_children)], function)
        new_entries = _struct([new_function if i == at_function else c for i, c in enumerate(entry_children)], entries)
        return pa.ListArray.from_arrays(offsets, new_entries, type=calls.type,
                                        mask=calls.is_null() if calls.null_count else None)

    return function_children[at_arguments].cast(pa.large_string()), turns, rebuild


def _turn_contents(name: str, column: pa.Array) -> _Piece | None:
    """The `content` strings of a list<struct<..., content, ...>> column, then the `arguments` of its
    turns' tool calls (when there are any), and how to put them back."""
    struct_type = column.type.value_type
    if not pa.types.is_struct(struct_type) or struct_type.get_field_index("content") < 0:
        return None
    offsets = pc.subtract(column.offsets, column.offsets[0])
    turns = column.flatten()
    fields = list(struct_type)
    children = turns.flatten()
    position = struct_type.get_field_index("content")
    rows = pc.list_parent_indices(column).to_numpy()
    content = combined(children[position]).cast(pa.large_string())
    at_calls = struct_type.get_field_index("tool_calls")
    calls = _call_arguments(children[at_calls]) if at_calls >= 0 else None
    arguments, call_turns, put_calls = calls if calls is not None and len(calls[0]) else (None, None, None)

    def rebuild(values: pa.Array) -> pa.Array:
        new = list(children)
        new[position] = values.slice(0, len(content)).cast(fields[position].type)
        if put_calls is not None:
            new[at_calls] = put_calls(values.slice(len(content)))
        return pa.ListArray.from_arrays(offsets, _struct(new, turns), type=column.type,
                                        mask=column.is_null() if column.null_count else None)

    if arguments is None:
        return _Piece(name, content, rows, rebuild, np.zeros(len(content), dtype=bool))
    return _Piece(name, pa.concat_arrays([content, arguments]), np.concatenate([rows, rows[call_turns]]), rebuild,
                  np.concatenate([np.zeros(len(content), dtype=bool), np.ones(len(arguments), dtype=bool)]))


def _strings(name: str, column: pa.Array) -> _Piece:
    return _Piece(name, column.cast(pa.large_string()), np.arange(len(column)),
                  lambda values: values.cast(column.type), np.zeros(len(column), dtype=bool))


def _strings_in(value: Any) -> Iterator[str]:
    """The string values of decoded JSON, depth first (object keys are left alone)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def _with_strings(value: Any, strings: Iterator[str]) -> Any:
    """`value` with its string values replaced, in `_strings_in` order, by the next of `strings`."""
    if isinstance(value, str):
        return next(strings)
    if isinstance(value, dict):
        return {key: _with_strings(item, strings) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_strings(item, strings) for item in value]
    return value


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def keep_json_valid(before: pl.Series, after: pl.Series, is_json: np.ndarray, names: bool = True) -> pl.Series:
    """`after` (redact_strings of `before`) where each changed JSON element (`is_json`) that no longer
    parses is redacted again on its decoded string values and re-encoded. Only changed elements are
    parsed, in Python; one that was not JSON before keeps its text redaction."""
    index = np.flatnonzero(is_json & (before != after).fill_null(False).to_numpy())
    broken = [int(i) for i in index if not _parses(after[int(i)])]
    decoded = {}
    for i in broken:
        try:
            decoded[i] = json.loads(before[i])
        except ValueError:
            continue
    if not decoded:
        return after
    strings = pl.Series([s for value in decoded.values() for s in _strings_in(value)], dtype=pl.String)
    redacted = iter(redact_strings(strings, names).to_list())
    fixed = [json.dumps(_with_strings(value, redacted), ensure_ascii=False) for value in decoded.values()]
    return after.scatter(list(decoded), pl.Series(fixed, dtype=pl.String))


class Redact(Stage):
    """Reads the task's text columns and `meta`; writes them redacted, `_key`/`_len` of changed rows,
    and `_n_<TYPE>` per row (placeholders inserted, summed per source by the executor)."""

    name = "redact"

    def __init__(self, task: str, names: bool = True) -> None:
        self.task = task
        self.names = names
        self.columns = (*text_columns(task), "meta")
        self.reads = self.columns
        self.writes = (*self.columns, "_key", "_len", *(f"{COUNT_PREFIX}{k}" for k in PLACEHOLDERS))

    def _pieces(self, batch: pa.RecordBatch) -> list[_Piece]:
        pieces = []
        for name in self.columns:
            column = combined(batch.column(name))
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                piece = _turn_contents(name, column)
                if piece is not None:
                    pieces.append(piece)
            elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                pieces.append(_strings(name, column))
        return pieces

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        pieces = self._pieces(batch)
        flat = pl.Series(pa.concat_arrays([p.values for p in pieces])) if pieces else pl.Series([], dtype=pl.String)
        is_json = np.concatenate([p.is_json for p in pieces]) if pieces else np.zeros(0, dtype=bool)
        redacted = keep_json_valid(flat, redact_strings(flat, self.names), is_json, self.names)
        counts = placeholder_counts(flat, redacted)
        rows = np.concatenate([p.rows for p in pieces]) if pieces else np.zeros(0, dtype=np.int64)
        changed_rows = np.zeros(batch.num_rows, dtype=bool)
        changed = (flat != redacted).fill_null(False).to_numpy()
        text_elements = np.concatenate([np.full(len(p.values), p.column != "meta") for p in pieces]) if pieces \
            else np.zeros(0, dtype=bool)
        changed_rows[rows[changed & text_elements]] = True        # meta is not part of the matching key
        out = redacted.to_arrow()
        start = 0
        for piece in pieces:
            values = out.slice(start, len(piece.values))
            start += len(piece.values)
            index = batch.schema.get_field_index(piece.column)
            batch = batch.set_column(index, piece.column, piece.rebuild(values))
        for kind in PLACEHOLDERS:
            per_row = np.bincount(rows, weights=counts[kind], minlength=batch.num_rows).astype(np.int32)
            batch = _put(batch, f"{COUNT_PREFIX}{kind}", pa.array(per_row, pa.int32()))
        if changed_rows.any() and "_key" in batch.schema.names:
            batch = _rekey(batch, self.task, changed_rows)
        return batch

    def summary(self) -> dict[str, object]:
        return {"placeholders": [f"<{k}>" for k in PLACEHOLDERS], "names": self.names,
                "rules": [f"{r.name} → <{r.kind}>" for r in RULES] + ["resident_id (check digit) → <ID_NUMBER>"]}


def _put(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    index = batch.schema.get_field_index(name)
    return batch.set_column(index, name, values) if index >= 0 else batch.append_column(name, values)


def _rekey(batch: pa.RecordBatch, task: str, changed: np.ndarray) -> pa.RecordBatch:
    """The matching key and length of the rows whose text changed (normalise computed them before)."""
    index = pa.array(np.flatnonzero(changed))
    texts = row_text_series(batch.take(index), task)
    keys = pl.Series(batch.column("_key")).scatter(index.to_numpy(), match_keys(texts))
    lengths = pl.Series(batch.column("_len")).scatter(index.to_numpy(), texts.str.len_chars().cast(pl.Int32))
    batch = _put(batch, "_key", keys.to_arrow().cast(batch.schema.field("_key").type))
    return _put(batch, "_len", lengths.to_arrow().cast(batch.schema.field("_len").type))
