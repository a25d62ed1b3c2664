"""Group zh converters, each driven through its catalogued reader + converter.

Real fixtures come from `examples/mirror/` (byte copies of `tests/fixtures/<id>/`). Sources without a
real sample (SOURCES.md) are tested on HAND-MADE fixtures in `tests/fixtures/handmade/<id>/`: the format
is the documented one, unverified against upstream.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from etl.convert.base import Filtered, RecordContext, Reject
from etl.convert.bencao import bencao_literature
from etl.convert.chatmed import unwrap_prompt
from etl.convert.meddialog import meddialog_raw, parse_raw_dialogue
from etl.convert.qizhen import html_cell_text
from etl.convert.toyhom import question_text
from tests.helpers_convert import HANDMADE, MIRROR, catalog_source, convert_source_files, turns


def _ctx(source_id: str) -> RecordContext:
    return RecordContext(catalog_source(source_id), "file", "line 1", "train")


# ---------------------------------------------------------------- Toyhom (real fixture, GBK CSV)

def test_toyhom_csv_first_row_and_counts() -> None:
    result = convert_source_files("toyhom_dialogue")
    assert (result.read, len(result.rows), result.rejects, sum(result.filtered.values())) == (40, 40, [], 0)
    first = result.rows[0]
    assert turns(first) == [
        ("user", "高血压患者能吃党参吗？\n我有高血压这两天女婿来的时候给我拿了些党参泡水喝，您好高血压可以吃党参吗？"),
        ("assistant", "高血压病人可以口服党参的。党参有降血脂，降血压的作用，可以彻底消除血液中的垃圾，从而对冠心病以及"
                      "心血管疾病的患者都有一定的稳定预防工作作用，因此平时口服党参能远离三高的危害。另外党参除了益气养血，"
                      "降低中枢神经作用，调整消化系统功能，健脾补肺的功能。感谢您的进行咨询，期望我的解释对你有所帮助。"),
    ]
    assert json.loads(first["meta"]) == {"department": "心血管科"}
    assert {json.loads(r["meta"])["department"] for r in result.rows} >= {"心血管科", "内分泌科"}


def test_toyhom_quoted_multiline_fields_are_one_record(tmp_path: Path) -> None:
    """The fixture rows have no quoting (SOURCES.md): hand-made GB18030 rows with commas, quotes and
    newlines inside fields, characters outside GB2312 (黃, —), and an `ask` of just 无."""
    folder = tmp_path / "toyhom_dialogue"
    folder.mkdir()
    text = ('department,title,ask,answer\n'
            '消化科,"胃疼, 怎么办？","吃饭后""很疼""，\n晚上也疼",建议做胃镜——黃医生\n'
            '神经科,头晕是什么原因？,无,可能是低血压。\n')
    (folder / "样例_内科5000-6000.csv").write_bytes(text.encode("gb18030"))
    result = convert_source_files("toyhom_dialogue", tmp_path)
    assert result.rejects == []
    assert [turns(r) for r in result.rows] == [
        [("user", '胃疼, 怎么办？\n吃饭后"很疼"，\n晚上也疼'), ("assistant", "建议做胃镜——黃医生")],
        [("user", "头晕是什么原因？"), ("assistant", "可能是低血压。")],
    ]


def test_toyhom_question_text_does_not_repeat_the_title() -> None:
    assert question_text("头疼", "头疼三天了") == "头疼三天了"
    assert question_text("头疼", "无") == "头疼"
    assert question_text("头疼", "吃什么药") == "头疼\n吃什么药"


def test_toyhom_txt_blocks_match_the_csv_rows() -> None:
    txt = convert_source_files("toyhom_dialogue_im_txt")
    csv_rows = convert_source_files("toyhom_dialogue").rows
    assert (txt.read, len(txt.rows), txt.rejects) == (40, 40, [])
    assert [turns(r) for r in txt.rows] == [turns(r) for r in csv_rows]  # the derived copy adds nothing
    assert not catalog_source("toyhom_dialogue_im_txt").enabled


@pytest.mark.parametrize("source_id", ["chinese_medical_dialogue_toyhom", "billgpt_cmdd", "huatuo_medical_qa_sharegpt",
                                       "huatuo_consultation_qa", "zhongjing_rlhf_label_tool",
                                       "huatuo_llama_knowledge_tuning", "huatuo_llama_med_infer", "cmcqa",
                                       "medical_dialog_processed_en", "medical_dialog_processed_zh"])
def test_aliases_and_non_training_data_are_disabled_with_a_reason(source_id: str) -> None:
    source = catalog_source(source_id)
    assert not source.enabled and source.disabled_reason


# ---------------------------------------------------------------- cMedQA2 (real candidates + HAND-MADE question/answer zips)

def test_cmedqa2_join_and_held_out_splits() -> None:
    """question.zip / answer.zip are HAND-MADE (format unverified); the candidate zips are real."""
    result = convert_source_files("cmedqa2")
    assert (result.read, len(result.rows), len(result.eval_rows), result.rejects) == (9, 3, 6, [])
    assert turns(result.rows[0]) == [("user", "孩子咳嗽一周了，晚上加重，需要吃什么药？"),
                                     ("assistant", "建议查血常规，必要时拍胸片，可先口服止咳化痰药。")]
    assert result.rows[0]["id"] == "cmedqa2/1001-1"
    splits = {json.loads(r["meta"])["ans_id"]: r["split"] for r in result.eval_rows}
    assert splits == {"76843": "validation", "52286": "validation", "52287": "validation",
                      "137315": "test", "137316": "test", "153600": "test"}


def test_cmedqa2_answer_to_unknown_question_is_a_read_reject(tmp_path: Path) -> None:
    folder = tmp_path / "cmedqa2"
    folder.mkdir()
    (folder / "question.zip").write_bytes((HANDMADE / "cmedqa2" / "question.zip").read_bytes())
    for name in ("dev_candidates.zip", "test_candidates.zip"):
        (folder / name).write_bytes((MIRROR / "cmedqa2" / name).read_bytes())
    with zipfile.ZipFile(folder / "answer.zip", "w") as archive:
        archive.writestr("answer.csv", "ans_id,question_id,content\n9,424242,孤立的回答\n")
    result = convert_source_files("cmedqa2", tmp_path)
    assert result.reject_reasons == {"unknown_question_id": 1} and result.rows == []


# ---------------------------------------------------------------- webMedQA (HAND-MADE)

def test_webmedqa_label_one_only() -> None:
    result = convert_source_files("webmedqa", HANDMADE)
    assert (len(result.rows), len(result.eval_rows), result.filtered) == (2, 2, {"negative_candidate": 3})
    assert turns(result.rows[0]) == [("user", "感冒发烧38度需要吃退烧药吗？"),
                                     ("assistant", "体温38度可以先物理降温，超过38.5度再服用退烧药。")]
    assert json.loads(result.rows[0]["meta"]) == {"category": "内科", "id": "1"}
    assert sorted(r["split"] for r in result.eval_rows) == ["test", "validation"]


def test_webmedqa_wrong_column_order_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "webmedqa"
    folder.mkdir()
    for name in ("valid.zip", "test.zip"):
        (folder / name).write_bytes((HANDMADE / "webmedqa" / name).read_bytes())
    with zipfile.ZipFile(folder / "train.zip", "w") as archive:
        archive.writestr("medQA_train.txt", "内科\t12345\t问题\t回答\t1\n")  # department, ID, …, label
    assert convert_source_files("webmedqa", tmp_path).reject_reasons == {"bad_label": 1}


# ---------------------------------------------------------------- Huatuo-26M family

def test_huatuo26m_test_copies_agree_and_are_eval() -> None:
    hf = convert_source_files("huatuo26m_testdatasets")
    zj = convert_source_files("zhongjing_huatuo26m_test")
    assert (len(hf.eval_rows), len(zj.eval_rows), hf.rows, zj.rows, hf.rejects, zj.rejects) == (40, 40, [], [], [], [])
    assert [turns(r) for r in hf.eval_rows] == [turns(r) for r in zj.eval_rows]
    assert turns(hf.eval_rows[0])[0] == ("user", "做了腰间盘穿丁手术后，用盐泡脚可以吗")
    assert turns(hf.eval_rows[0])[1][1].startswith("问题分析：你好:你是由于身体出现了一些局部的腰部损伤")


def test_huatuo_encyclopedia_nested_questions() -> None:
    """HAND-MADE fixture (format unverified): `questions` is a list of paraphrase lists."""
    result = convert_source_files("huatuo_encyclopedia_qa", HANDMADE)
    assert (len(result.rows), len(result.eval_rows), result.rejects) == (2, 2, [])
    assert turns(result.rows[0]) == [("user", "什么是高血压？"),
                                     ("assistant", "高血压是以体循环动脉压增高为主要特征的临床综合征。")]
    assert json.loads(result.rows[0]["meta"]) == {"question_paraphrases": ["高血压是什么病？"]}


def test_huatuo_knowledge_graph_and_lite() -> None:
    """HAND-MADE fixtures (format unverified)."""
    kg = convert_source_files("huatuo_knowledge_graph_qa", HANDMADE)
    assert turns(kg.rows[0]) == [("user", "阿莫西林的适应症是什么？"), ("assistant", "敏感菌所致的呼吸道、泌尿道感染等。")]
    lite = convert_source_files("huatuo26m_lite", HANDMADE)
    assert lite.rows[0]["id"] == "huatuo26m_lite/1"
    assert json.loads(lite.rows[0]["meta"]) == {"label": "儿科", "related_diseases": "发热", "score": 5}


def test_huatuogpt_sft_multi_turn() -> None:
    """HAND-MADE fixture (format unverified): `data` alternates 问：/答：."""
    result = convert_source_files("huatuogpt_sft_v1", HANDMADE)
    assert result.reject_reasons == {"bad_alternation": 1}
    assert turns(result.rows[1]) == [("user", "我血糖有点高"), ("assistant", "空腹血糖是多少？"),
                                     ("user", "7.2"), ("assistant", "建议复查并做糖耐量试验。")]


# ---------------------------------------------------------------- MedDialog raw (real excerpts, in a rebuilt zip)

def test_meddialog_raw_zh() -> None:
    result = convert_source_files("medical_dialog_raw_zh")
    assert (result.read, len(result.rows), result.rejects, result.filtered) == (13, 11, [], {"no_doctor_reply": 2})
    first = result.rows[0]
    assert first["id"] == "medical_dialog_raw_zh/qa_zh_1-1"
    assert turns(first) == [
        ("user", "疾病：乳腺纤维腺瘤\n病情描述（发病时间、主要症状、就诊医院等）：从发现第一个小硬块起至今至少一年了吧。"
                 "彩超检查出至少三个硬块，其中一个硬块较大，按压时会有轻微痛感。不按不疼。\n曾经治疗情况和效果：今年第一次做乳腺检查。\n"
                 "想得到怎样的帮助：想咨询下医生，我这种情况需要如何治疗，是否需要动手术？如需要手术，是否适合到2012年5月份左右再做？"
                 "还是做这个手术是否需要避开经期？什么时间最合适？"),
        ("assistant", "建议手术切除，可以5月份再手术。"),
    ]
    assert json.loads(first["meta"])["doctor_faculty"] == "首都医科大学附属北京同仁医院 普外科"
    by_id = {json.loads(r["meta"])["dialogue_id"]: r for r in result.rows}
    # id=2 closes with an unanswered thank-you note; id=4 has three patient messages in a row
    assert json.loads(by_id["2"]["meta"])["unanswered"] == "真情寄语："
    assert turns(by_id["4"])[2] == ("user", "甲状腺没有全部切除，肉瘤切除后又复发了。\n谢谢。十分感谢。\n请问我怎样挂号？")
    assert [role for role, _ in turns(by_id["7"])] == ["user", "assistant"] * 3


def test_meddialog_raw_en() -> None:
    result = convert_source_files("medical_dialog_raw_en")
    assert (result.read, len(result.rows), result.rejects) == (20, 20, [])
    user, doctor = turns(result.rows[0])
    assert user[1].startswith("Will masturbation cause weakness in nerves?\n\nHi, may I answer your health queries")
    assert doctor[1].startswith("Hi,\nMasturbation does make the nerves weak")
    assert doctor[1].endswith("Let me know if I can assist you further.")


def test_meddialog_ascii_colon_doctor_first_and_gb18030(tmp_path: Path) -> None:
    folder = tmp_path / "medical_dialog_raw_zh" / "data"
    folder.mkdir(parents=True)
    text = "id=5\nhttps://example.org/5\n\nDescription\n疾病：\n咳嗽\n\nDialogue\n医生:\n咳嗽多久了？\n病人:\n三天\n医生:\n多喝水\n"
    with zipfile.ZipFile(folder / "Medical-Dialogue-Dataset-Chinese.zip", "w") as archive:
        archive.writestr("2011.txt", text.encode("gb18030"))
    result = convert_source_files("medical_dialog_raw_zh", tmp_path)
    assert turns(result.rows[0]) == [("user", "疾病：咳嗽"), ("assistant", "咳嗽多久了？"),
                                     ("user", "三天"), ("assistant", "多喝水")]


def test_meddialog_parse_keeps_multiline_utterances() -> None:
    parsed = parse_raw_dialogue("id=1\nhttp://x\n\nDescription\nq\n\nDialogue\nPatient:\nline one\nline two\nDoctor:\nok\n")
    assert parsed["utterances"] == [("user", "line one\nline two"), ("assistant", "ok")]


# A haodf thread with every section the upstream format has (UCSD-AI4H/COVID-Dialogue README: "ID, URL,
# Description, Dialogue, (Optional) Diagnosis and suggestions"), shortened from upstream records 2 and 84 of
# COVID-Dialogue-Dataset-Chinese.txt: the doctor's summary, a follow-up Dialogue block after it, a Dialogue
# block holding only a booking note, and a second Description (the patient's next consultation).
THREAD = """id=84
https://www.haodf.com/doctorteam/flow_team_6475487373_1.htm

Doctor faculty
浙江大学医学院附属第一医院 血液科

Description
疾病： 血常规异常
病情描述： 本人因近期咽部不适， 微咳，体温徘徊37-37.2; 血常规异常，不知问题是否严重吗?
希望获得的帮助： 就医引导

Dialogue
医生：
症状有几天？
病人：
目前没有什么明显症状，只是嗓子不舒服,但不痛；鼻塞。
医生：
清淡饮食，多喝温水，观察几天

Dialogue
预约医生： 王梦嫣

Description
疾病： 血常规异常
病情描述： 血常规复查，还是老样子。看了百度之后更加紧张，不知道该怎么办了？

Dialogue
医生：
轻度异常，血液病可能性不大，考虑哪里有炎症。
病人：
好的王医生

Diagnosis and suggestions
病情摘要及初步印象： 患者血常规轻度异常，无明显不适主诉。
总结建议： 建议两周后复查血常规，目前无需药物治疗。清淡饮食。

Dialogue
病人：
王医生，我今天来浙二血液科复查了。血常规正常了，是不是可以不需要再高密度的复查了？
医生：
这变化这么快，可能之前检测有问题，现在结果好的，我建议不用高频率复查。
"""


def test_meddialog_thread_with_every_section() -> None:
    """The held-out defect: `Diagnosis and suggestions` and the Dialogue block after it were glued onto
    the previous turn. The summary belongs in meta, the follow-up continues the conversation."""
    (row,) = meddialog_raw({"id": "84", "text": THREAD}, _ctx("medical_dialog_raw_zh"))
    assert [(t.role, t.content) for t in row.messages] == [
        ("user", "疾病： 血常规异常\n病情描述： 本人因近期咽部不适， 微咳，体温徘徊37-37.2; 血常规异常，不知问题是否严重吗?\n"
                 "希望获得的帮助： 就医引导"),
        ("assistant", "症状有几天？"),
        ("user", "目前没有什么明显症状，只是嗓子不舒服,但不痛；鼻塞。"),
        ("assistant", "清淡饮食，多喝温水，观察几天"),
        ("user", "疾病： 血常规异常\n病情描述： 血常规复查，还是老样子。看了百度之后更加紧张，不知道该怎么办了？"),
        ("assistant", "轻度异常，血液病可能性不大，考虑哪里有炎症。"),
        ("user", "好的王医生\n王医生，我今天来浙二血液科复查了。血常规正常了，是不是可以不需要再高密度的复查了？"),
        ("assistant", "这变化这么快，可能之前检测有问题，现在结果好的，我建议不用高频率复查。"),
    ]
    assert row.meta == {
        "dialogue_id": "84", "url": "https://www.haodf.com/doctorteam/flow_team_6475487373_1.htm",
        "doctor_faculty": "浙江大学医学院附属第一医院 血液科",
        "diagnosis_and_suggestions": ["病情摘要及初步印象： 患者血常规轻度异常，无明显不适主诉。\n"
                                      "总结建议： 建议两周后复查血常规，目前无需药物治疗。清淡饮食。"],
        "notes": ["预约医生： 王梦嫣"],
    }


def test_meddialog_section_title_left_in_a_message_is_rejected() -> None:
    """The cheap content check: a parser that misses a section (here an unknown title spelled like a
    known one is simulated by the guard directly) turns into a reject, not silent output."""
    from etl.convert.base import Turn
    from etl.convert.meddialog import reject_section_titles

    glued = [Turn("user", "咳嗽"), Turn("assistant", "多喝水\n\nDiagnosis and suggestions\n总结建议： 观察")]
    with pytest.raises(Reject, match="section_header_in_message.*turn 1 \\(assistant\\).*Diagnosis and suggestions"):
        reject_section_titles(glued)
    assert reject_section_titles(glued[:1]) == glued[:1]


def test_meddialog_en_repeated_sections() -> None:
    """en threads repeat Description/Dialogue too (COVID-Dialogue-Dataset-English.txt has one)."""
    text = ("id=7\nhttps://www.icliniq.com/qa/x\n\nDescription\nCough for a week.\n\nDialogue\nPatient:\n"
            "Hello doctor, I have a cough.\nDoctor:\nHi, any fever?\n\nDescription\nFever started today.\n\n"
            "Dialogue\nPatient:\nIt is 38 degrees now.\nDoctor:\nPlease get a chest x-ray.\n")
    (row,) = meddialog_raw({"id": "7", "text": text}, _ctx("medical_dialog_raw_en"))
    assert [(t.role, t.content) for t in row.messages] == [
        ("user", "Cough for a week.\n\nHello doctor, I have a cough."), ("assistant", "Hi, any fever?"),
        ("user", "Fever started today.\nIt is 38 degrees now."), ("assistant", "Please get a chest x-ray.")]


def test_meddialog_processed() -> None:
    """HAND-MADE fixtures (format unverified)."""
    en = convert_source_files("medical_dialog_processed_en", HANDMADE)
    assert turns(en.rows[0]) == [
        ("user", "Sore throat for three days.\n\nI have had a sore throat for three days. What should I do?"),
        ("assistant", "Gargle with warm salt water and see a doctor if a fever starts.")]
    zh = convert_source_files("medical_dialog_processed_zh", HANDMADE)
    assert turns(zh.rows[0]) == [("user", "我最近总是头晕，是什么原因？"), ("assistant", "需要测量血压，排除高血压。")]
    assert json.loads(zh.rows[0]["meta"]) == {"unanswered": "好的，谢谢。"}


# ---------------------------------------------------------------- IMCS-21, DXY, CBLUE

def test_imcs21_handmade() -> None:
    """HAND-MADE fixture (format unverified, from the baseline code)."""
    result = convert_source_files("imcs21", HANDMADE)
    assert (len(result.rows), len(result.eval_rows)) == (1, 1)
    assert turns(result.rows[0]) == [("user", "宝宝咳嗽三天，有痰，不发烧。"), ("assistant", "你好，咳嗽是干咳还是有痰？"),
                                     ("user", "有痰。\n晚上咳得厉害。"), ("assistant", "考虑支气管炎，可以雾化治疗。")]
    meta = json.loads(result.rows[0]["meta"])
    assert meta["diagnosis"] == "小儿支气管炎" and meta["dialogue_id"] == "10001" and len(meta["report"]) == 2


def test_imcs21_krds_python_repr() -> None:
    result = convert_source_files("imcs21_krds_dxy")
    assert (result.read, len(result.rows), len(result.eval_rows), result.rejects) == (40, 30, 10, [])
    first_test = result.eval_rows[0]
    assert first_test["id"] == "imcs21_krds_dxy/1988056" and first_test["split"] == "test"
    assert turns(first_test)[1:3] == [("assistant", "有没有发现您的宝宝有疱疹的症状?"), ("user", "发现了,宝宝确实有过疱疹")]
    assert turns(first_test)[-1] == ("assistant", "宝宝有可能患上了小儿手足口病, 请去医院就诊.")
    assert json.loads(first_test["meta"])["goal"]["explicit_inform_slots"] == {"皮疹": True, "烦躁不安": True, "发烧": True}


def test_imcs21_krds_never_evaluates_code(tmp_path: Path) -> None:
    folder = tmp_path / "imcs21_krds_dxy" / "task" / "DDP" / "KRDS"
    folder.mkdir(parents=True)
    (folder / "dxy_dialog_data_dialog_v2.txt").write_text("test __import__('os').system('false')\n", encoding="utf-8")
    assert convert_source_files("imcs21_krds_dxy", tmp_path).reject_reasons == {"bad_python_literal": 1}


def test_chip_mdcfnpc_is_eval() -> None:
    result = convert_source_files("cblue_chip_mdcfnpc")
    assert (result.read, len(result.eval_rows), result.rows, result.rejects) == (5, 5, [], [])
    first = result.eval_rows[0]
    assert first["id"] == "cblue_chip_mdcfnpc/4113"
    assert turns(first)[1] == ("assistant", "不严重，可以自己吸收。\n要是吸收的慢的话可以中药治疗，如止痛化症胶囊。。。")
    assert json.loads(first["meta"])["findings"]["1"][0]["attr"] == "阴性"


def test_meddg_handmade() -> None:
    """HAND-MADE fixture (format unverified)."""
    result = convert_source_files("cblue_meddg", HANDMADE)
    assert (len(result.rows), len(result.eval_rows)) == (1, 1)
    assert turns(result.rows[0])[2] == ("user", "有一点反酸\n没有烧心")
    assert json.loads(result.rows[0]["meta"])["entities"]["Medicine"] == ["奥美拉唑"]


# ---------------------------------------------------------------- CMB, Zhongjing

def test_cmb_answer_key_yields_no_rows() -> None:
    result = convert_source_files("cmb_eval")
    assert (result.read, result.all_rows, result.rejects, result.filtered) == (40, [], [], {"answer_key_only": 40})


def test_cmb_question_items_become_eval_text() -> None:
    from etl.convert.cmb import cmb

    item = {"exam_type": "医师考试", "question": "下列哪项是", "option": {"A": "甲", "B": "乙"}, "answer": "B"}
    (row,) = cmb(item, _ctx("cmb_eval"))
    assert row.text == "下列哪项是\nA. 甲\nB. 乙\n答案：B" and row.meta == {"exam_type": "医师考试"}


def test_cmtmedqa_test_two_schemas() -> None:
    result = convert_source_files("zhongjing_cmtmedqa_test")
    assert (len(result.eval_rows), result.rows, result.rejects) == (40, [], [])
    first = result.eval_rows[0]
    assert first["id"] == "zhongjing_cmtmedqa_test/j4219" and len(first["messages"]) == 8
    assert turns(first)[-2:] == [("user", "我知道了，谢谢医生的解答。"),
                                 ("assistant", "不客气，如果您有任何其他问题，随时都可以向我咨询。祝您早日康复！")]
    safety = result.eval_rows[30]
    assert turns(safety)[0][1].startswith("医生，我家孩子发烧有41度")  # the leading space is stripped
    assert json.loads(safety["meta"]) == {"kind": "safety"}


def test_cmtmedqa_train_and_rlhf2000_handmade() -> None:
    """HAND-MADE fixtures (format unverified)."""
    train = convert_source_files("cmtmedqa_train", HANDMADE)
    assert train.rows[0]["id"] == "cmtmedqa_train/t1"
    assert turns(train.rows[0]) == [("user", "医生，我胃疼三天了。"), ("assistant", "请问疼痛与进食有关吗？"),
                                    ("user", "那需要做胃镜吗？"), ("assistant", "如果症状持续两周以上，建议做胃镜。")]
    reward = convert_source_files("zhongjing_rlhf2000", HANDMADE).rows[0]
    assert turns(reward, "prompt") == [("user", "孩子发烧39度怎么办？")]
    assert reward["rejected"][0]["content"] == "多穿衣服捂汗就好了。"


# ---------------------------------------------------------------- SCIR-HI (Med-ChatGLM, 本草), QiZhen, ChatMed

def test_med_chatglm_strips_prompt_wrapper() -> None:
    result = convert_source_files("med_chatglm")
    assert (len(result.rows), result.rejects) == (40, [])
    assert turns(result.rows[0]) == [
        ("user", "患者反复出现反酸、烧心等症状，考虑为Barrett食管，需要注意哪些并发症？"),
        ("assistant", "根据知识，Barrett食管的并发症包括消化性溃疡、反流食管炎、胃肠道出血、贫血、肿瘤等，需要引起注意。")]


def test_huatuo_llama_med_alpaca_jsonl() -> None:
    result = convert_source_files("huatuo_llama_med")
    assert (len(result.rows), result.rejects) == (40, [])
    assert turns(result.rows[0])[0] == ("user", "一名年龄在70岁的女性，出现了晕厥、不自主颤抖、情绪不稳等症状，请详细说明其手术治疗和术前准备。")


def test_bencao_literature_embedded_turns() -> None:
    result = convert_source_files("huatuo_llama_literature")
    assert (len(result.rows), result.rejects) == (25, [])
    assert turns(result.rows[0]) == [
        ("user", "我听说免疫疗法是治疗晚期肝癌的一种很有效的方法，真的吗？"),
        ("assistant", "是的，免疫疗法是一种新兴的治疗方法，它可以提高人体免疫系统对癌细胞的反应能力。"
                      "对于晚期肝癌患者，免疫疗法已证明具有很高的治疗效果。"),
        ("user", "但是，这是否适用于所有的肝癌患者？"),
        ("assistant", "不是所有的肝癌患者都适合进行免疫疗法。根据患者的临床表现和病情，医生会对患者进行评估，从而选择最适合的治疗方案。")]
    assert sum(r["id"].split("/")[1].isdigit() for r in result.rows) == 10  # rows with an upstream int id
    with pytest.raises(Reject, match="bad_alternation"):
        bencao_literature({"instruction": " <user>: a <user>: b", "output": "c"}, _ctx("huatuo_llama_literature"))


def test_cmcoqa_bench_questions_are_eval_text() -> None:
    result = convert_source_files("huatuo_llama_cmcoqa_bench")
    assert (len(result.eval_rows), result.rows) == (40, [])
    assert result.eval_rows[0]["text"] == "描述传染性的甲型肝炎的传播途径及预防措施。"
    assert json.loads(result.eval_rows[0]["meta"]) == {"ICD-10": "Certain infectious and parasitic diseases"}


def test_qizhen_drug_eval_html_to_text() -> None:
    result = convert_source_files("qizhen_drug_eval")
    assert (len(result.eval_rows), result.rows, result.rejects) == (40, [], [])
    first = result.eval_rows[0]
    assert turns(first)[0] == ("user", "地屈孕酮片的适应病症")
    assert turns(first)[1][1].startswith("本品用于治疗内源性孕酮不足引起的疾病") and "<p>" not in turns(first)[1][1]
    assert json.loads(first["meta"])["expert_indications"][:2] == ["内源性孕酮不足", "痛经"]
    assert html_cell_text("<p>a&amp;b</p><p>c<br/>d</p>") == "a&b\nc\nd"


def test_qizhen_sft20k_handmade() -> None:
    """HAND-MADE fixture (format unverified)."""
    result = convert_source_files("qizhen_sft20k", HANDMADE)
    assert turns(result.rows[1]) == [("user", "布洛芬片的用法用量是什么？"), ("assistant", "成人一次1片，一日3次，或遵医嘱。")]


def test_chatmed_and_shennong_query_response() -> None:
    chatmed = convert_source_files("chatmed_consult")
    shennong = convert_source_files("shennong_tcm")
    assert (len(chatmed.rows), len(shennong.rows), chatmed.rejects, shennong.rejects) == (40, 40, [], [])
    assert turns(chatmed.rows[0])[0][1].startswith("手指尖一开始很痒，后来抓着抓着就开始气泡")


def test_test_examples_keep_only_unwrapped_prompts() -> None:
    chatmed = convert_source_files("chatmed_consult_test_examples")
    shennong = convert_source_files("shennong_tcm_test_examples")
    assert (len(chatmed.eval_rows), len(shennong.eval_rows), chatmed.rows, shennong.rows) == (40, 40, [], [])
    assert chatmed.eval_rows[0]["text"] == "人流已经有一个多月。经期也已经来了。经期刚刚过去，可以同房吗，"
    assert shennong.eval_rows[0]["text"] == "我最近腹痛，有什么方剂可以推荐吗？"
    assert unwrap_prompt("<s>问：\n头疼\n答：\n") == "头疼"


def test_converters_reject_and_filter_with_specific_reasons() -> None:
    from etl.convert.huatuo import huatuogpt_sft

    with pytest.raises(Reject, match="odd_turns"):
        huatuogpt_sft({"data": ["问：a"]}, _ctx("huatuogpt_sft_v1"))
    with pytest.raises(Filtered, match="no_doctor_reply"):
        meddialog_raw({"id": "1", "text": "id=1\nhttp://x\nDialogue\n病人：\n你好\n"}, _ctx("medical_dialog_raw_zh"))
