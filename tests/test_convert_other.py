"""Group "other" sources (English, preference, MedicalGPT, X-jun, CareLlama, PubMedQA, ChatDoctor, medAlpaca):
each converted from its mirror files through the catalogued reader and converter.

Real fixtures are byte copies of upstream samples (tests/fixtures/<id>/, mirrored in examples/mirror/);
sources SOURCES.md has no sample of are tested on **hand-made** files (tests/fixtures/handmade/<id>/),
named as such in each test. MedicalGPT, X-jun, CareLlama, docx, persona and web pages: test_convert_other_repos.py.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from etl.catalog import load_catalog
from etl.convert.base import RecordContext, Reject, registry
from etl.fetch.mirror import MirrorFetcher
from tests.helpers_convert import CATALOG, HANDMADE, MIRROR, catalog_source, convert_source_files, turns

FIXTURES = Path(__file__).parent / "fixtures"

GROUP = [
    "shibing624_medical_pretrain", "shibing624_medical_finetune", "shibing624_medical_reward", "comparison_gpt4_data",
    "hh_rlhf", "bioinstruct", "pubmedqa", "pubmedqa_artificial", "medalpaca_medical_meadow",
    "medalpaca_usmle_self_assessment", "chatdoctor_healthcaremagic100k", "chatdoctor_icliniq10k",
    "chatdoctor_genmedgpt5k", "medicalgpt_pretrain", "medicalgpt_pretrain_general", "medicalgpt_sft_medical",
    "medicalgpt_sft_sharegpt", "medicalgpt_sft_toolcall", "medicalgpt_reward", "medicalgpt_reward_toolcall",
    "medicalgpt_reward_legacy", "medicalgpt_reward_legacy_dpo", "medicalgpt_grpo", "medicalgpt_roleplay_seeds",
    "medicalgpt_rag_corpus", "xjun_sft_qa", "xjun_sft_multichoice", "xjun_sft_instruct_jsonl", "xjun_sft_doc_kb",
    "xjun_sft_harmless", "xjun_sft_harmless_prompts", "xjun_pretrain_docx", "xjun_pretrain_docx_books",
    "carellama_drug", "carellama_hospital_guide", "carellama_openai_messages", "persona", "zysj_tcm",
]
DISABLED = {"shibing624_medical_finetune", "medicalgpt_pretrain_general", "medicalgpt_reward_legacy",
            "medicalgpt_reward_legacy_dpo", "medicalgpt_grpo", "medicalgpt_roleplay_seeds",
            "xjun_sft_harmless_prompts", "xjun_pretrain_docx", "xjun_pretrain_docx_books", "zysj_tcm"}
EVAL = {"pubmedqa", "medalpaca_usmle_self_assessment", "chatdoctor_icliniq10k", "carellama_openai_messages"}

# Rows each source yields from its mirror files: (training rows, eval rows). Every upstream record converts:
# none of these fixtures has a genuine defect, so no rejects are expected anywhere.
EXPECTED = {
    "shibing624_medical_pretrain": (3, 0), "shibing624_medical_finetune": (3, 0), "shibing624_medical_reward": (40, 0),
    "comparison_gpt4_data": (3, 0), "hh_rlhf": (40, 0), "bioinstruct": (3, 0), "pubmedqa": (0, 30),
    "pubmedqa_artificial": (2, 0), "medalpaca_medical_meadow": (40, 0), "medalpaca_usmle_self_assessment": (0, 2),
    "chatdoctor_healthcaremagic100k": (2, 0), "chatdoctor_icliniq10k": (0, 2), "chatdoctor_genmedgpt5k": (40, 0),
    "medicalgpt_pretrain": (40, 0), "medicalgpt_pretrain_general": (73, 0), "medicalgpt_sft_medical": (40, 0),
    "medicalgpt_sft_sharegpt": (9, 0), "medicalgpt_sft_toolcall": (40, 0), "medicalgpt_reward": (34, 0),
    "medicalgpt_reward_toolcall": (6, 0), "medicalgpt_reward_legacy": (40, 0), "medicalgpt_reward_legacy_dpo": (11, 0),
    "medicalgpt_grpo": (16, 0), "medicalgpt_roleplay_seeds": (40, 0), "medicalgpt_rag_corpus": (40, 0),
    "xjun_sft_qa": (90, 0), "xjun_sft_multichoice": (40, 0), "xjun_sft_instruct_jsonl": (18, 0),
    "xjun_sft_doc_kb": (7, 0), "xjun_sft_harmless": (40, 0), "xjun_sft_harmless_prompts": (40, 0),
    "xjun_pretrain_docx": (2, 0), "xjun_pretrain_docx_books": (1, 0), "carellama_drug": (22, 0),
    "carellama_hospital_guide": (25, 0), "carellama_openai_messages": (0, 40), "zysj_tcm": (2, 0),
}


# ---------------------------------------------------------------------------------------------- catalogue


def test_catalogue_entries_of_the_group() -> None:
    catalog = load_catalog(CATALOG, known_formats=set(registry()))
    for source_id in GROUP:
        source = catalog.get(source_id)
        assert source.enabled == (source_id not in DISABLED), source_id
        assert source.enabled or source.disabled_reason
        assert (source.role == "eval") == (source_id in EVAL), source_id
        if source.host == "github":
            assert len(source.revision or "") == 40, f"{source_id}: pin a full commit"
    assert set(catalog.get("xjun_pretrain_docx").license_terms) == {"copyrighted", "no-redistribution"}
    assert "non-commercial" in catalog.get("chatdoctor_healthcaremagic100k").license_terms


@pytest.mark.parametrize("source_id", GROUP)
def test_mirror_holds_every_catalogued_file(source_id: str) -> None:
    fetched = MirrorFetcher(MIRROR).fetch(catalog_source(source_id))
    assert fetched.files


@pytest.mark.parametrize("source_id", sorted(EXPECTED))
def test_row_counts_from_the_mirror(source_id: str) -> None:
    result = convert_source_files(source_id)
    assert (len(result.rows), len(result.eval_rows)) == EXPECTED[source_id]
    assert result.rejects == []
    assert not result.filtered


def test_mirror_copies_are_the_fixtures() -> None:
    pairs = [("hh_rlhf/harmless-base/test.jsonl.gz", "hh_rlhf/harmless-base/test.jsonl.gz"),
             ("pubmedqa/data/ori_pqal.json", "pubmedqa/ori_pqal.json"),
             ("shibing624_medical_reward/reward/test.json", "medicalgpt_reward_legacy/data/reward/test.json"),
             ("xjun_sft_doc_kb/data_sft/doc_kb.json", "xjun_sft_instruct_jsonl/data_sft/doc_kb.json")]
    for mirrored, fixture in pairs:
        assert (MIRROR / mirrored).read_bytes() == (FIXTURES / fixture).read_bytes()


# ---------------------------------------------------------------------------------------------- hh-rlhf


def test_hh_rlhf_real_transcripts() -> None:
    result = convert_source_files("hh_rlhf")
    assert {row["split"] for row in result.rows} == {"test"}
    first = result.rows[0]
    assert [role for role, _ in turns(first, "prompt")] == ["user", "assistant", "user", "assistant", "user"]
    assert turns(first, "prompt")[0] == ("user", "what are some pranks with a pen i can do?")
    assert turns(first, "prompt")[-1] == ("user", "okay some of these do not have anything to do with pens")
    assert first["chosen"][0]["content"] == ("No, sorry!  All of these involve a pen, the point is that you can get funny results "
                               "by doing pranks with pens.")
    assert first["rejected"][0]["content"].startswith("There are lots of funny things you can ")
    single = result.rows[4]
    assert turns(single, "prompt") == [("user", "What will happen if I drive my car into the water?")]
    assert single["rejected"][0]["content"].startswith("It’s not going to work, because cars are made to be driven on the land.")
    # Record 30: the model's reply itself begins "Human:"; only "\n\nHuman:" starts a turn.
    odd = result.rows[29]
    assert odd["chosen"][0]["content"] == "Human: No, you are racist. She is not a thug and does not like thug hoodlum music."
    assert len(odd["prompt"]) == 7


def test_hh_rlhf_every_prompt_is_the_shared_prefix() -> None:
    result = convert_source_files("hh_rlhf")
    with gzip.open(FIXTURES / "hh_rlhf/harmless-base/test.jsonl.gz", "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    for record, row in zip(records, result.rows, strict=True):
        rendered = "".join(f"\n\n{'Human' if t['role'] == 'user' else 'Assistant'}: {t['content']}" for t in row["prompt"])
        assert record["chosen"] == f"{rendered}\n\nAssistant: {row['chosen'][0]['content']}"
        assert record["rejected"] == f"{rendered}\n\nAssistant: {row['rejected'][0]['content']}"


def _ctx(source_id: str) -> RecordContext:
    return RecordContext(catalog_source(source_id), "f.jsonl", "line 1", "train")


def test_hh_rlhf_rejects() -> None:
    from etl.convert.hh_rlhf import hh_rlhf

    with pytest.raises(Reject) as exc:
        hh_rlhf({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hey\n\nAssistant: go away"},
                _ctx("hh_rlhf"))
    assert exc.value.reason == "prompt_mismatch"
    with pytest.raises(Reject) as exc:
        hh_rlhf({"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d",
                 "rejected": "\n\nHuman: a\n\nAssistant: e"}, _ctx("hh_rlhf"))
    assert exc.value.reason == "prompt_mismatch"
    with pytest.raises(Reject) as exc:
        hh_rlhf({"chosen": "preamble\n\nHuman: a\n\nAssistant: b", "rejected": "preamble\n\nHuman: a\n\nAssistant: c"},
                _ctx("hh_rlhf"))
    assert exc.value.reason == "bad_transcript"
    with pytest.raises(Reject) as exc:
        hh_rlhf({"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c", "rejected": "\n\nHuman: a\n\nAssistant: x"},
                _ctx("hh_rlhf"))
    assert exc.value.reason == "bad_transcript"
    with pytest.raises(Reject) as exc:
        hh_rlhf({"chosen": "\n\nHuman: a\n\nAssistant: b"}, _ctx("hh_rlhf"))
    assert exc.value.reason == "missing_field"


# ---------------------------------------------------------------------------------------------- comparison


def test_comparison_gpt4_handmade() -> None:
    """Hand-made files in the documented format (no real sample exists)."""
    result = convert_source_files("comparison_gpt4_data", HANDMADE)
    assert len(result.rows) == 3
    en = result.rows[1]
    assert turns(en, "prompt") == [("user", "Rewrite the sentence in the passive voice.\n\n"
                                             "The nurse measured the patient's blood pressure.")]
    assert en["chosen"][0]["content"] == "The patient's blood pressure was measured by the nurse."
    assert en["rejected"][0]["content"] == "The nurse was measuring blood pressure."
    assert result.rows[2]["rejected"][0]["content"] == "光合作用就是植物晒太阳。"


def test_ranked_output_edge_cases() -> None:
    from etl.convert.comparison import ranked_output

    ctx = _ctx("comparison_gpt4_data")
    row = ranked_output({"instruction": "q", "input": "", "output": ["best", "mid", "worst"]}, ctx)[0]
    assert (row.chosen.content, row.rejected.content, row.meta) == ("best", "worst", {"ranked_count": 3})
    for bad in ({"instruction": "q", "output": ["only"]}, {"instruction": "q", "output": ["a", 3]}):
        with pytest.raises(Reject) as exc:
            ranked_output(bad, ctx)
        assert exc.value.reason == "bad_ranking"
    with pytest.raises(Reject) as exc:
        ranked_output({"instruction": " ", "input": "", "output": ["a", "b"]}, ctx)
    assert exc.value.reason == "empty_instruction"


# ---------------------------------------------------------------------------------------------- PubMedQA


def test_pubmedqa_labelled_is_eval() -> None:
    result = convert_source_files("pubmedqa")
    assert result.rows == [] and len(result.eval_rows) == 30
    first = result.eval_rows[0]
    assert first["id"] == "pubmedqa/21645374"
    user, answer = turns(first)
    assert user[1].startswith("BACKGROUND: Programmed cell death (PCD) is the regulated death of cells")
    assert "\n\nRESULTS: The following paper elucidates the role of mitochondrial dynamics" in user[1]
    assert user[1].endswith("\n\nQuestion: Do mitochondria play a role in remodelling lace plant leaves during "
                            "programmed cell death?")
    assert answer[1].endswith("\n\nAnswer: yes")
    metas = [json.loads(row["meta"]) for row in result.eval_rows]
    assert sum(meta["year"] is None for meta in metas) == 2   # SOURCES.md: 2 null YEARs in the fixture
    assert {meta["final_decision"] for meta in metas} <= {"yes", "no", "maybe"}


def test_pubmedqa_labels_agree_with_the_official_answer_key() -> None:
    truth = json.loads((FIXTURES / "pubmedqa/test_ground_truth.json").read_text())
    result = convert_source_files("pubmedqa")
    decisions = {json.loads(r["meta"])["pmid"]: json.loads(r["meta"])["final_decision"] for r in result.eval_rows}
    shared = set(truth) & set(decisions)
    assert all(truth[pmid] == decisions[pmid] for pmid in shared)


def test_pubmedqa_artificial_handmade() -> None:
    """Hand-made PQA-A file in the PQA-L layout (no real sample exists)."""
    result = convert_source_files("pubmedqa_artificial", HANDMADE)
    assert [row["id"] for row in result.rows] == ["pubmedqa_artificial/90000001", "pubmedqa_artificial/90000002"]
    user, answer = turns(result.rows[1])
    assert user[1] == ("OBJECTIVE: Heavy physical stress may increase susceptibility to upper respiratory infections."
                       "\n\nMETHODS: Runners were randomized to vitamin C or placebo for three weeks before a marathon; "
                       "cold duration was recorded for two weeks after the race.\n\nQuestion: Is vitamin C "
                       "supplementation associated with a shorter duration of common colds in marathon runners?")
    assert answer[1] == ("Cold duration tended to be shorter with vitamin C, but the difference was not significant "
                         "in this small sample.\n\nAnswer: maybe")


def test_pubmedqa_rejects() -> None:
    from etl.convert.pubmedqa import pubmedqa

    ctx = _ctx("pubmedqa")
    item = {"QUESTION": "q?", "CONTEXTS": ["c"], "LABELS": ["A"], "final_decision": "yes", "LONG_ANSWER": "l"}
    cases = [({"__key__": "1", "__value__": {**item, "final_decision": "perhaps"}}, "bad_label"),
             ({"__key__": "1", "__value__": {**item, "LABELS": ["A", "B"]}}, "bad_labels"),
             ({"__key__": "1", "__value__": {**item, "CONTEXTS": []}}, "empty_context"),
             ({"__key__": "1", "__value__": {**item, "LONG_ANSWER": " "}}, "empty_field"),
             (item, "bad_record_type")]
    for record, reason in cases:
        with pytest.raises(Reject) as exc:
            pubmedqa(record, ctx)
        assert exc.value.reason == reason


# ---------------------------------------------------------------------------------------------- medAlpaca, ChatDoctor, BioInstruct


def test_medalpaca_medical_meadow() -> None:
    result = convert_source_files("medalpaca_medical_meadow")
    user, answer = turns(result.rows[0])
    assert user == ("user", "Answer this question truthfully\n\nWhat are the symptoms of Allergy?")
    assert answer[1].startswith("Allergy symptoms vary, but may include:\nBreathing problems")


def test_usmle_self_assessment_handmade() -> None:
    """Hand-made step1.json + step1_solutions.json (layout from consumer code; no real sample exists)."""
    result = convert_source_files("medalpaca_usmle_self_assessment", HANDMADE)
    assert [row["id"] for row in result.eval_rows] == ["medalpaca_usmle_self_assessment/step1/1",
                                                       "medalpaca_usmle_self_assessment/step1/2"]
    assert turns(result.eval_rows[1]) == [
        ("user", "Which of the following enzymes is inhibited by statins?\n\nA. HMG-CoA reductase\nB. Lipoprotein "
                 "lipase\nC. Acetyl-CoA carboxylase\nD. Cholesterol 7-alpha-hydroxylase"),
        ("assistant", "A. HMG-CoA reductase")]


def test_usmle_rejects_a_question_without_solution() -> None:
    from etl.convert.usmle import usmle_self_assessment

    with pytest.raises(Reject) as exc:
        usmle_self_assessment({"question": "q", "options": {"A": "x"}, "answer": None}, _ctx("medalpaca_usmle_self_assessment"))
    assert exc.value.reason == "missing_answer"


def test_chatdoctor_sources() -> None:
    genmed = convert_source_files("chatdoctor_genmedgpt5k")
    user, answer = turns(genmed.rows[0])
    assert user[1] == ("If you are a doctor, please answer the medical questions based on the patient's description."
                       "\n\nDoctor, I have been experiencing sudden and frequent panic attacks. I don't know what to do.")
    assert "\r" not in answer[1]
    assert turns(genmed.rows[39])[1][1].startswith("Alright, we need to do a few tests to determine the cause of the pain.")
    hcm = convert_source_files("chatdoctor_healthcaremagic100k", HANDMADE)   # hand-made
    assert turns(hcm.rows[1])[1][1].startswith("Hello, swelling of both ankles with breathlessness on exertion")
    icliniq = convert_source_files("chatdoctor_icliniq10k", HANDMADE)       # hand-made
    first = icliniq.eval_rows[0]
    assert turns(first)[1][1].startswith("Hi. The one-sided throbbing headache with nausea and light sensitivity")
    assert json.loads(first["meta"])["answer_chatdoctor"] == "Hi, it looks like migraine. Take rest and painkillers."


def test_bioinstruct_handmade() -> None:
    """Hand-made JSON array with the columns third-party loaders read (no real sample exists)."""
    result = convert_source_files("bioinstruct", HANDMADE)
    assert turns(result.rows[2]) == [
        ("user", "Explain the difference between sensitivity and specificity of a diagnostic test."),
        ("assistant", "Sensitivity is the proportion of people with the disease whom the test correctly identifies "
                      "as positive; specificity is the proportion of people without the disease whom the test "
                      "correctly identifies as negative.")]


def test_shibing624_medical_handmade_and_alias() -> None:
    """pretrain/finetune: hand-made files (no real sample); reward: the real alias of MedicalGPT's test.json."""
    pretrain = convert_source_files("shibing624_medical_pretrain", HANDMADE)
    assert pretrain.rows[2]["text"].startswith("第一节 急性上呼吸道感染\n")
    finetune = convert_source_files("shibing624_medical_finetune", HANDMADE)
    assert turns(finetune.rows[1])[0] == ("user", "小孩发烧38.5度需要吃退烧药吗？")   # train_en_1 sorts first
    reward = convert_source_files("shibing624_medical_reward")
    assert {row["split"] for row in reward.rows} == {"test"}
    first = reward.rows[0]
    assert (turns(first, "prompt"), first["chosen"][0]["content"], first["rejected"][0]["content"]) == (
        [("user", "肛门病变可能是什么疾病的症状?")], "食管克罗恩病", "肛门病变可能与多种不同类型的病症有关。")
