"""redact: every PII type is replaced by its placeholder, every clinical look-alike survives, every
text field of every task shape is rewritten and the counts come out per source."""

import json

import polars as pl
import pyarrow as pa
import pytest

from etl.stages.base import settle
from etl.stages.normalise import Normalise
from etl.stages.redact import Redact, is_resident_id, redact_strings
from tests import stage_rows


def redact(text: str, names: bool = True) -> str:
    return redact_strings(pl.Series([text]), names).to_list()[0]


@pytest.mark.parametrize(("text", "expected"), [
    # Chinese mobiles: bare, +86 / 0086 / 86, space and dash separators
    ("电话13812345678，", "电话<PHONE>，"),
    ("+86 139-1234-5678", "<PHONE>"),
    ("0086 15912345678", "<PHONE>"),
    ("8618612345678", "<PHONE>"),
    ("手机 177 1234 5678 随时联系", "手机 <PHONE> 随时联系"),
    # landlines with area codes, parentheses, extensions; 400 numbers; a local number after a cue
    ("座机010-65295114转1234，", "座机<PHONE>，"),
    ("(0571)87654321", "<PHONE>"),
    ("0755 2345678", "<PHONE>"),
    ("服务热线400-820-1234", "服务热线<PHONE>"),
    ("电话：62345678", "电话：<PHONE>"),
    # US / UK
    ("call (555) 123-4567 now", "call <PHONE> now"),
    ("+1 415-555-2671", "<PHONE>"),
    ("tel 020 7946 0958.", "tel <PHONE>."),
    ("+44 7700 900123", "<PHONE>"),
    # resident IDs: the GB 11643 example (X check digit), a 15-digit legacy one, any number after the cue
    ("身份证11010519491231002X，", "身份证<ID_NUMBER>，"),
    ("证号 440524800101001", "证号 <ID_NUMBER>"),
    ("身份证号：110101199003077578", "身份证号：<ID_NUMBER>"),
    ("SSN: 123-45-6789", "SSN: <ID_NUMBER>"),
    ("passport number E12345678", "passport number <ID_NUMBER>"),
    # e-mail, URL, bare domain, IP
    ("邮箱zhang.san@163.com。", "邮箱<EMAIL>。"),
    ("see https://www.haodf.com/doctor/123.html，", "see <URL>，"),
    ("访问www.example.cn了解", "访问<URL>了解"),
    ("好大夫 haodf.com 上", "好大夫 <URL> 上"),
    ("server 192.168.1.10 down", "server <IP> down"),
    # WeChat / QQ / Weibo ids after cue words
    ("加微信abc_12345详聊", "加微信<SOCIAL_ID>详聊"),
    ("微信号：Doctor-Li88", "微信号：<SOCIAL_ID>"),
    ("vx: zhangsan2020", "vx: <SOCIAL_ID>"),
    ("QQ 123456789", "QQ <SOCIAL_ID>"),
    ("扣扣:987654321", "扣扣:<SOCIAL_ID>"),
    ("微博 healthdoc_01", "微博 <SOCIAL_ID>"),
    ("WeChat: li_doctor", "WeChat: <SOCIAL_ID>"),
    # record numbers after their cue words
    ("住院号：20230012345，", "住院号：<RECORD_NO>，"),
    ("门诊号 MZ123456", "门诊号 <RECORD_NO>"),
    ("病案号为00123456", "病案号为<RECORD_NO>"),
    ("床号:12", "床号:<RECORD_NO>"),
    ("登记号 A2023-001", "登记号 <RECORD_NO>"),
    ("MRN 12345678.", "MRN <RECORD_NO>."),
    # names in high-precision contexts
    ("患者张三，男，45岁", "患者<NAME>，男，45岁"),
    ("姓名：王小明，性别：男", "姓名：<NAME>，性别：男"),
    ("接诊医生：李红\n", "接诊医生：<NAME>\n"),
    ("祝早日康复。\n——刘建国医生", "祝早日康复。\n——<NAME>医生"),
    ("北京协和医院 欧阳明主任 电话：010-65295114", "北京协和医院 <NAME>主任 电话：<PHONE>"),
    ("Regards, Dr. John Smith", "Regards, Dr. <NAME>"),
])
def test_each_pii_type_is_replaced_by_its_placeholder(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "阿司匹林100mg qd，0.25g tid，布洛芬缓释胶囊300mg",
    "空腹血糖7.8mmol/L，糖化血红蛋白6.5%",
    "WBC 13.8×10^9/L，PLT 250×10^9/L，Hb 120g/L",
    "血压140/90mmHg，心率88次/分",
    "2023-10-12 08:30 复诊，2023年10月12日，10/12/2023",
    "年龄65岁，体重70kg，身高170cm",
    "诊断：I10 原发性高血压（ICD-10 I10），E11.9",
    "国药准字H20044251，国药准字Z11020001",
    "标本号13812345678，样本号：15912345678，条码 02112345678",
    "订单流水 110105194912310021 已处理",          # 18 digits, wrong check digit, not after an ID cue
    "检测值 440524801301001",                       # 15 digits whose date (month 13) is impossible
    "Take 500 mg twice daily; BP 120/80 mmHg; HbA1c 7.2%; 1.5 L/day",
    "剂量250-300mg，疗程7-14天，第3.2.1节",
    "全科医生建议复查，马上找医生，高年资医生会诊",
    "患者高热3天，咳嗽",
    "医生您好，请问张医生什么时候出诊",
])
def test_clinical_numbers_and_lookalikes_survive(text):
    assert redact(text) == text


def test_resident_id_check_digit_and_birth_date():
    assert is_resident_id("11010519491231002X") and is_resident_id("11010519491231002x")
    assert not is_resident_id("110105194912310021")          # check digit wrong
    assert not is_resident_id("110105194902300028")          # 30 February
    assert is_resident_id("440524800101001") and not is_resident_id("440524801301001")


def test_names_can_be_switched_off():
    assert redact("患者张三，男，45岁，电话13812345678", names=False) == "患者张三，男，45岁，电话<PHONE>"


def _turns(rows, extra=False):
    fields = [("role", pa.string()), ("content", pa.string())]
    if extra:
        fields.append(("tool_calls", pa.string()))
    return pa.array(rows, type=pa.list_(pa.struct(fields)))


def _stage(task, table, normalise=True):
    batch = table.to_batches()[0]
    return Redact(task).apply(Normalise(task).apply(batch) if normalise else batch)


def test_sft_turns_with_extra_fields_and_meta_are_redacted_and_counted():
    table = stage_rows.sft([[("user", "我的电话13812345678")], [("user", "hi")]], sources=["a", "b"])
    messages = _turns([
        [{"role": "user", "content": "我的电话13812345678，邮箱a.b@qq.com", "tool_calls": None},
         {"role": "assistant", "content": "已记录", "tool_calls": '[{"name": "save"}]'}],
        [{"role": "user", "content": "血压140/90mmHg", "tool_calls": None},
         {"role": "assistant", "content": "偏高", "tool_calls": None}],
    ], extra=True)
    table = table.set_column(table.schema.get_field_index("messages"), "messages", messages)
    table = table.set_column(table.schema.get_field_index("meta"), "meta",
                             pa.array([json.dumps({"url": "https://x.com/q/1"}), "{}"]))
    out = _stage("sft", table)
    turns = out.column("messages").to_pylist()
    assert turns[0][0] == {"role": "user", "content": "我的电话<PHONE>，邮箱<EMAIL>", "tool_calls": None}
    assert turns[0][1] == {"role": "assistant", "content": "已记录", "tool_calls": '[{"name": "save"}]'}
    assert turns[1][0]["content"] == "血压140/90mmHg"
    assert json.loads(out.column("meta")[0].as_py()) == {"url": "<URL>"}
    settled, tally = settle(out)
    assert tally.counts == {"a": {"EMAIL": 1, "PHONE": 1, "URL": 1}}
    assert not [n for n in settled.schema.names if n.startswith("_n_")]


@pytest.mark.parametrize("shape", ["string", "turns"])
def test_reward_chosen_rejected_as_strings_or_turns(shape):
    common = stage_rows.common(["r/0"], ["r"], [50])
    prompt = _turns([[{"role": "user", "content": "QQ 123456789 怎么联系"}]])
    if shape == "string":
        chosen, rejected = pa.array(["请打010-65295114"]), pa.array(["发邮件 x@y.org"])
    else:
        chosen = _turns([[{"role": "assistant", "content": "请打010-65295114"}]])
        rejected = _turns([[{"role": "assistant", "content": "发邮件 x@y.org"}]])
    table = pa.table({"prompt": prompt, "chosen": chosen, "rejected": rejected, **common})
    out = _stage("reward", table, normalise=shape == "string")   # normalise knows string chosen only
    row = out.to_pylist()[0]
    content = (lambda v: v) if shape == "string" else (lambda v: v[0]["content"])
    assert row["prompt"][0]["content"] == "QQ <SOCIAL_ID> 怎么联系"
    assert content(row["chosen"]) == "请打<PHONE>"
    assert content(row["rejected"]) == "发邮件 <EMAIL>"
    assert out.column("chosen").type == chosen.type
    assert settle(out)[1].counts == {"r": {"EMAIL": 1, "PHONE": 1, "SOCIAL_ID": 1}}


def test_copies_differing_only_in_pii_get_one_matching_key():
    table = stage_rows.pretrain(["咨询请拨13812345678，谢谢", "咨询请拨13987654321，谢谢", "血糖7.8mmol/L"])
    out = _stage("pretrain", table)
    keys = out.column("_key").to_pylist()
    assert keys[0] == keys[1] != keys[2]
    assert out.column("text").to_pylist()[0] == "咨询请拨<PHONE>，谢谢"
    assert out.column("_len").to_pylist()[0] == len("咨询请拨<PHONE>，谢谢")
    assert out.column("_n_PHONE").to_pylist() == [1, 1, 0]


def test_a_sliced_batch_is_redacted_row_for_row():
    table = stage_rows.sft([[("user", f"电话1381234567{i}"), ("assistant", "好")] for i in range(6)])
    batch = Normalise("sft").apply(table.to_batches()[0]).slice(2, 3)
    out = Redact("sft").apply(batch)
    assert [m[0]["content"] for m in out.column("messages").to_pylist()] == ["电话<PHONE>"] * 3
    assert out.column("_n_PHONE").to_pylist() == [1, 1, 1]
