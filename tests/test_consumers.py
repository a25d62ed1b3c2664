"""Real consumers of the output: every config against the dataset formats TRL documents (conversational
language modelling, conversational preference, tool calling), the LLaMA-Factory export against its
dataset_info.json fields and sharegpt rules. Where TRL, transformers or LLaMA-Factory are installed their
own loaders run on the same output (`pytest.importorskip`); CI need not install them.

The output is a real build from the bundled mirror, of sources that cover every shape: plain and
multi-turn SFT, tool-calling SFT and preference rows, hh-rlhf (whose upstream test file is `reward`'s
`test` split), and eval sources of two tasks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest

from etl.cli import main
from tests.helpers_badinput import plain_turns

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("medicalgpt_sft_toolcall", "medicalgpt_reward_toolcall", "medicalgpt_sft_sharegpt", "medicalgpt_reward",
           "hh_rlhf", "shennong_tcm", "zhongjing_cmtmedqa_test", "shennong_tcm_test_examples")
TOOL_SOURCES = {"medicalgpt_sft_toolcall", "medicalgpt_reward_toolcall"}
ROLES = {"system", "user", "assistant", "tool"}
# dataset_info.json fields LLaMA-Factory's DatasetAttr reads for a local file (data/README.md of LLaMA-Factory).
ENTRY_KEYS = {"file_name", "formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags"}
COLUMN_KEYS = {"prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
               "audios", "chosen", "rejected", "kto_tag"}
TAG_KEYS = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag"}

# A chat template that renders tools, tool calls and tool results, as real ones (Qwen, Llama 3.1) do.
CHAT_TEMPLATE = (
    "{%- if tools %}<|tools|>{{ tools | tojson }}\n{%- endif %}"
    "{%- for m in messages %}<|{{ m.role }}|>"
    "{%- if m.tool_calls %}{%- for c in m.tool_calls %}<call>{{ c.function.name }} {{ c.function.arguments }}</call>"
    "{%- endfor %}{%- else %}{{ m.content }}{%- endif %}<|end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>{%- endif %}"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("consumers") / "out"
    assert main(["build", "--catalog", str(ROOT / "sources.yaml"), "--mirror", str(ROOT / "examples" / "mirror"),
                 "--out", str(out), "--workers", "2", "--sources", *SOURCES]) == 0
    return out


@pytest.fixture(scope="module")
def loaded(built: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, datasets.DatasetDict]:
    cache = str(tmp_path_factory.mktemp("hf_cache"))
    return {config: datasets.load_dataset(str(built), config, cache_dir=cache)
            for config in ("pretrain", "sft", "reward", "eval") if (built / config).exists()}


def _check_turns(turns: list[dict[str, Any]], where: str) -> None:
    for turn in turns:
        assert set(turn) <= {"role", "content", "tool_calls"} and turn["role"] in ROLES, where
        if "tool_calls" in turn:
            assert turn["role"] == "assistant", where
            for call in turn["tool_calls"]:
                assert call["type"] == "function" and call["function"]["name"], where
                assert isinstance(json.loads(call["function"]["arguments"]), dict), where
        else:
            assert turn["content"].strip(), where


def _check_tools(row: dict[str, Any]) -> None:
    if row["source"] in TOOL_SOURCES and row["tools"] is not None:
        tools = json.loads(row["tools"])
        assert tools and all(t["type"] == "function" and t["function"]["name"] for t in tools)
    elif row["source"] not in TOOL_SOURCES:
        assert row["tools"] is None, row["id"]


def test_configs_follow_trl_formats(loaded: dict[str, datasets.DatasetDict]) -> None:
    assert set(loaded) == {"sft", "reward", "eval"}
    assert set(loaded["reward"]) == {"train", "test"}            # hh-rlhf's upstream test file
    tool_turns = 0
    for row in map(plain_turns, loaded["sft"]["train"]):
        # conversational language modelling: {"messages": [{"role", "content"}, ...]}
        _check_turns(row["messages"], row["id"])
        body = [t for t in row["messages"] if t["role"] != "system"]
        assert body[0]["role"] == "user" and body[-1]["role"] == "assistant" and "tool_calls" not in body[-1]
        _check_tools(row)
        tool_turns += sum(t["role"] == "tool" for t in row["messages"])
    assert tool_turns > 0
    for split in loaded["reward"]:
        for row in map(plain_turns, loaded["reward"][split]):
            # conversational preference: prompt messages, chosen / rejected each one assistant message
            _check_turns(row["prompt"] + row["chosen"] + row["rejected"], row["id"])
            assert row["prompt"][-1]["role"] in ("user", "tool")
            assert len(row["chosen"]) == len(row["rejected"]) == 1
            assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
            assert row["chosen"] != row["rejected"]
            _check_tools(row)
    calls = [r for r in map(plain_turns, loaded["reward"]["train"]) if "tool_calls" in r["chosen"][0]]
    assert calls and all(r["tools"] for r in calls)
    tasks = {"pretrain": ("text",), "sft": ("messages",), "reward": ("prompt", "chosen", "rejected")}
    for row in loaded["eval"]["test"]:
        filled = {c for cols in tasks.values() for c in cols if row[c] is not None}
        assert filled == set(tasks[row["task"]]), row["id"]
    assert {r["task"] for r in loaded["eval"]["test"]} == {"sft", "pretrain"}


def _tiny_tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: i for i, char in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>",
                                                chat_template=CHAT_TEMPLATE)


def decode_tools(row: dict[str, Any]) -> dict[str, Any]:
    """The README's recipe: TRL hands `tools` to the chat template as it is, which wants a list."""
    return {"tools": json.loads(row["tools"]) if row["tools"] else None}


def prompt_ends_on_user(row: dict[str, Any]) -> bool:
    """The README's filter for TRL before 1.0 (0.24 is what LLaMA-Factory pins): its preference preprocessing
    raises on a prompt that ends on the tool's result. TRL 1.x accepts such prompts."""
    return row["prompt"][-1]["role"] == "user"


def _trl_accepts_tool_prompts() -> bool:
    import trl

    return int(trl.__version__.split(".")[0]) >= 1


def test_trl_applies_its_chat_template(loaded: dict[str, datasets.DatasetDict]) -> None:
    pytest.importorskip("trl")
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    tokenizer = _tiny_tokenizer()
    sft = loaded["sft"]["train"]
    for row in map(plain_turns, sft):
        assert is_conversational(row)
        text = maybe_apply_chat_template({"messages": row["messages"]}, tokenizer,
                                         tools=decode_tools(row)["tools"])["text"]
        if row["tools"]:
            assert text.startswith("<|tools|>") and json.loads(row["tools"])[0]["function"]["name"] in text
        for turn in row["messages"]:
            for call in turn.get("tool_calls", []):
                assert f"<call>{call['function']['name']} {call['function']['arguments']}</call>" in text
            if turn["role"] == "tool":
                assert f"<|tool|>{turn['content']}<|end|>" in text
        assert row["messages"][-1]["content"] in text
    rows = list(map(plain_turns, loaded["reward"]["train"]))
    assert any(not prompt_ends_on_user(row) for row in rows)
    for row in rows if _trl_accepts_tool_prompts() else filter(prompt_ends_on_user, rows):
        assert is_conversational(row)
        pair = maybe_apply_chat_template({k: row[k] for k in ("prompt", "chosen", "rejected")}, tokenizer,
                                         tools=decode_tools(row)["tools"])
        assert pair["prompt"].endswith("<|assistant|>")
        assert pair["chosen"] != pair["rejected"]


def _tiny_model(tokenizer: Any, head: str) -> Any:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                      max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.eos_token_id, num_labels=1)
    cls = transformers.LlamaForCausalLM if head == "lm" else transformers.LlamaForSequenceClassification
    return cls(config)


def _tokenized(dataset: datasets.Dataset, parts: tuple[str, ...]) -> bool:
    """Every part has its token ids (`chosen_input_ids` in TRL 0.24, `chosen_ids` in 1.x), none empty."""
    columns = {part: [c for c in dataset.column_names if c in (f"{part}_input_ids", f"{part}_ids")] for part in parts}
    return all(len(found) == 1 and all(dataset[found[0]]) for found in columns.values())


def test_trl_trainers_prepare_and_step(loaded: dict[str, datasets.DatasetDict], tmp_path: Path) -> None:
    trl = pytest.importorskip("trl")
    tokenizer = _tiny_tokenizer()
    common = {"output_dir": str(tmp_path), "max_steps": 1, "per_device_train_batch_size": 2, "report_to": "none",
              "use_cpu": True, "save_strategy": "no", "logging_strategy": "no"}
    sft = loaded["sft"]["train"].map(decode_tools)
    trainer = trl.SFTTrainer(model=_tiny_model(tokenizer, "lm"), processing_class=tokenizer, train_dataset=sft,
                             args=trl.SFTConfig(max_length=2048, **common))
    assert len(trainer.train_dataset) == len(sft) and "input_ids" in trainer.train_dataset.column_names
    trainer.train()
    reward = loaded["reward"]["train"]
    if not _trl_accepts_tool_prompts():
        reward = reward.filter(prompt_ends_on_user)
    assert any(row["tools"] for row in reward)                   # tool-calling pairs remain
    dpo = trl.DPOTrainer(model=_tiny_model(tokenizer, "lm"), ref_model=_tiny_model(tokenizer, "lm"),
                         processing_class=tokenizer, train_dataset=reward,
                         args=trl.DPOConfig(max_length=2048, **common))
    assert _tokenized(dpo.train_dataset, ("prompt", "chosen", "rejected"))
    dpo.train()
    rm = trl.RewardTrainer(model=_tiny_model(tokenizer, "cls"), processing_class=tokenizer,
                           train_dataset=reward.map(decode_tools), args=trl.RewardConfig(max_length=2048, **common))
    assert _tokenized(rm.train_dataset, ("chosen", "rejected"))
    rm.train()


@pytest.fixture(scope="module")
def exported(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("lf")
    assert main(["export", "--format", "llamafactory", str(built), str(dest)]) == 0
    return dest


def test_export_follows_llamafactory_dataset_info(exported: Path) -> None:
    info = json.loads((exported / "dataset_info.json").read_text(encoding="utf-8"))
    assert {"medcorpus_sft_sharegpt", "medcorpus_reward", "medcorpus_reward_test",
            "medcorpus_eval_sft_alpaca_test", "medcorpus_eval_pretrain_test"} <= set(info)
    for name, entry in info.items():
        assert set(entry) <= ENTRY_KEYS and set(entry.get("columns", {})) <= COLUMN_KEYS, name
        assert set(entry.get("tags", {})) <= TAG_KEYS, name
        records = [json.loads(line) for line in (exported / entry["file_name"]).read_text(encoding="utf-8").splitlines()]
        assert records, name
        if entry.get("formatting") != "sharegpt":
            continue
        tags, columns = entry["tags"], entry["columns"]
        assert (tags["function_tag"], tags["observation_tag"], columns["tools"]) == ("function_call", "observation", "tools")
        odd, even = {tags["user_tag"], tags["observation_tag"]}, {tags["assistant_tag"], tags["function_tag"]}
        for record in records:
            turns = record[columns["messages"]]
            assert all(t[tags["role_tag"]] in (odd if i % 2 == 0 else even) for i, t in enumerate(turns)), record["id"]
            for turn in turns:
                if turn[tags["role_tag"]] == tags["function_tag"]:
                    call = json.loads(turn[tags["content_tag"]])
                    assert all(c["name"] and isinstance(c["arguments"], dict) for c in (call if isinstance(call, list) else [call]))
            assert isinstance(record[columns["tools"]], str)
            if entry.get("ranking"):
                assert len(turns) % 2 == 1
                assert record[columns["chosen"]][tags["role_tag"]] in even
                assert record[columns["rejected"]][tags["role_tag"]] in even
            else:
                assert len(turns) % 2 == 0
    tool_rows = [json.loads(line) for line in (exported / info["medcorpus_reward"]["file_name"]).read_text().splitlines()]
    assert any(r["chosen"]["from"] == "function_call" for r in tool_rows)


def test_llamafactory_loads_the_export(exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISABLE_VERSION_CHECK", "1")
    parser = pytest.importorskip("llamafactory.data.parser")
    converter = pytest.importorskip("llamafactory.data.converter")
    hparams = pytest.importorskip("llamafactory.hparams")
    names = ["medcorpus_sft_alpaca", "medcorpus_sft_sharegpt", "medcorpus_reward", "medcorpus_reward_test"]
    attrs = parser.get_dataset_list(names, str(exported))
    assert [a.formatting for a in attrs] == ["alpaca", "sharegpt", "sharegpt", "sharegpt"]
    assert attrs[2].ranking and attrs[2].tools == "tools" and attrs[1].function_tag == "function_call"
    data_args = hparams.DataArguments(dataset_dir=str(exported), dataset=",".join(names))
    for name, attr in zip(names, attrs, strict=True):
        raw = datasets.load_dataset("json", data_files=str(exported / attr.dataset_name), split="train",
                                    cache_dir=str(tmp_path / "cache"))
        aligned = converter.align_dataset(raw, attr, data_args, training_args=hparams.TrainingArguments(
            output_dir=str(tmp_path / "o")))
        assert len(aligned) == len(raw)
        rows = aligned.to_list()
        # LLaMA-Factory marks a record it cannot read by emptying its prompt/response: none may be
        assert all(r["_prompt"] and r["_response"] for r in rows), name
        if attr.ranking:
            assert all(len(r["_response"]) == 2 for r in rows)
        if name in ("medcorpus_sft_sharegpt", "medcorpus_reward"):
            assert any(r["_tools"] for r in rows)
