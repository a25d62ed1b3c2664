"""The dataset card: the output folder's README.md, rendered from the manifest alone.

The card is publishable as it is: YAML metadata the Hub and `datasets` read (licences, languages, task
categories, size category, one config per task with its splits), the per-source composition with a
chart, the licence terms grouped with warnings, every citation, how the corpus was built and the
column contract. Bytes depend only on the manifest (sorted, no dates), so two builds give one card.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from etl.chart import render_composition

TASKS = ("pretrain", "sft", "reward")
CONFIGS = (*TASKS, "eval")   # eval: the eval-role rows of every task (benchmarks), never trained on
SPLITS = ("train", "validation", "test")
CHART_PATH = "stats/composition.png"

# Licence identifiers the Hub accepts in `license:`; anything else is reported as `other`.
HUB_LICENSES = frozenset({
    "apache-2.0", "mit", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0",
    "epl-2.0", "eupl-1.1", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1",
    "lgpl-3.0", "isc", "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by", "odbl", "openrail", "pddl",
    "llama2", "llama3", "llama3.1", "unlicense", "unknown", "other",
})
OTHER_LICENSE_NAME = "medcorpus-mixed-upstream"

# What each catalogue licence term means for a user of the corpus (shown in the licence section).
TERM_NOTES = {
    "non-commercial": ("Non-commercial use only", "may not be used for commercial purposes, which includes "
                       "training models for a commercial product"),
    "academic-only": ("Academic research only", "are licensed for academic research and nothing else"),
    "copyrighted": ("Copyrighted", "carry no open licence; use is at your own risk and may need the rights "
                    "holders' permission"),
    "no-redistribution": ("Redistribution forbidden upstream", "have terms that forbid redistribution: this copy "
                          "is for private use; `medcorpus publish` refuses it unless `--license-allow ID` names "
                          "each source, which only a holder of the right to redistribute may do"),
    "unclear": ("Unclear licence", "have unclear terms upstream; check the upstream page before use"),
}
WARNED_TERMS = ("non-commercial", "academic-only", "copyrighted", "no-redistribution")

SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                   (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
                   (1_000_000_000, "100M<n<1B"), (10_000_000_000, "1B<n<10B"))


def write_card(out_dir: Path, manifest: dict) -> None:
    """Render `out_dir/README.md` and `out_dir/stats/composition.png` from `manifest`, both atomically."""
    out_dir = Path(out_dir)
    render_composition(manifest, out_dir / CHART_PATH)
    text = render_card(manifest)
    target = out_dir / "README.md"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, target)


def render_card(manifest: dict) -> str:
    """The whole card as a string (pure: no file access)."""
    included = included_sources(manifest)
    parts = [
        "---\n" + yaml.safe_dump(card_metadata(manifest), sort_keys=False, allow_unicode=True,
                                 default_flow_style=False, width=1000) + "---\n",
        _intro(manifest, included),
        _composition(manifest, included),
        _licences(manifest, redistributed_sources(manifest)),
        _columns(),
        _build(manifest),
        _privacy_and_quality(manifest, included),
        _not_included(manifest),
        _citations(manifest, included),
    ]
    return "\n".join(p for p in parts if p).rstrip("\n") + "\n"


def included_sources(manifest: dict) -> dict[str, dict]:
    """Training sources with rows in the corpus, by id."""
    return {sid: entry for sid, entry in sorted(manifest.get("sources", {}).items())
            if entry.get("role", "train") == "train" and _written(entry) > 0}


def eval_sources(manifest: dict) -> dict[str, dict]:
    """Sources with rows in the `eval` config (eval-role sources and the eval splits of training sources)."""
    return {sid: entry for sid, entry in sorted(manifest.get("sources", {}).items())
            if int((entry.get("counts") or {}).get("eval_written") or 0) > 0}


def redistributed_sources(manifest: dict) -> dict[str, dict]:
    """Every source some row of which is in the output: training and eval configs."""
    return dict(sorted({**included_sources(manifest), **eval_sources(manifest)}.items()))


def split_rows(manifest: dict) -> dict[str, dict[str, int]]:
    """Rows per task and split, from `splits` (or, failing that, from the shard list)."""
    result: dict[str, dict[str, int]] = {}
    splits = manifest.get("splits") or {}
    if splits:
        for task, per_split in splits.items():
            for split, info in (per_split or {}).items():
                result.setdefault(task, {})[split] = int((info or {}).get("rows") or 0)
    else:
        for shard in manifest.get("shards") or []:
            task, split = shard.get("task"), shard.get("split")
            if task in CONFIGS and split:
                by_task = result.setdefault(task, {})
                by_task[split] = by_task.get(split, 0) + int(shard.get("rows") or 0)
    return result


def hub_license_id(license_text: str) -> str:
    """Map a catalogue licence string (`GPL-3.0 (non-commercial research)`, `CC BY-NC 4.0`) to a Hub id."""
    head = re.split(r"[(;,]", license_text or "", maxsplit=1)[0].strip().lower()
    candidate = re.sub(r"[\s_]+", "-", head)
    if candidate in HUB_LICENSES:
        return candidate
    if not head or candidate in {"unknown", "none", "n/a"}:
        return "unknown"
    return "other"


def size_category(rows: int) -> str:
    for bound, label in SIZE_CATEGORIES:
        if rows < bound:
            return label
    return "n>1T" if rows > 10**12 else "10B<n<100B" if rows < 10**11 else "100B<n<1T"


def card_metadata(manifest: dict) -> dict[str, Any]:
    """The YAML front matter, as an ordered dict ready for `yaml.safe_dump(sort_keys=False)`."""
    included = redistributed_sources(manifest)
    licenses = sorted({hub_license_id(e.get("license", "")) for e in included.values()}) or ["unknown"]
    langs = sorted({lang for e in included.values() for lang, n in (e.get("langs") or {}).items()
                    if n and re.fullmatch(r"[a-z]{2,3}", lang) and lang != "und"})
    rows = split_rows(manifest)
    tasks_present = [t for t in TASKS if sum(rows.get(t, {}).values()) > 0]
    total = sum(sum(rows.get(t, {}).values()) for t in tasks_present)
    meta: dict[str, Any] = {"license": licenses}
    if "other" in licenses:
        meta["license_name"] = OTHER_LICENSE_NAME
        meta["license_link"] = "README.md"
    meta["language"] = langs or ["zh", "en"]
    meta["multilinguality"] = "multilingual" if len(langs) > 1 else "monolingual"
    categories = ["text-generation"]
    if "sft" in tasks_present:
        categories.append("question-answering")
    meta["task_categories"] = categories
    meta["tags"] = ["medical", "medcorpus"] + [
        tag for task, tag in (("pretrain", "pretraining"), ("sft", "sft"), ("reward", "preference"))
        if task in tasks_present
    ]
    meta["size_categories"] = [size_category(total)]
    meta["pretty_name"] = "MedCorpus"
    meta["configs"] = [
        {"config_name": task,
         "data_files": [{"split": split, "path": f"{task}/{split}-*.parquet"}
                        for split in SPLITS if rows.get(task, {}).get(split, 0) > 0]}
        for task in [*tasks_present, *(["eval"] if sum(rows.get("eval", {}).values()) else [])]
    ]
    return meta


def _written(entry: dict) -> int:
    return int((entry.get("counts") or {}).get("written") or 0)


def _cell(value: Any) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0.0%"


def _lang_mix(langs: dict[str, int]) -> str:
    total = sum(langs.values())
    items = sorted(((n, lang) for lang, n in langs.items() if n), key=lambda x: (-x[0], x[1]))
    return ", ".join(f"{lang} {_percent(n, total)}" for n, lang in items) or "n/a"


def _link(entry: dict) -> str:
    homepage = entry.get("homepage")
    return f"[{_cell(entry.get('name') or 'link')}]({homepage})" if homepage else _cell(entry.get("name") or "")


def _intro(manifest: dict, included: dict[str, dict]) -> str:
    rows = split_rows(manifest)
    configs = [t for t in CONFIGS if sum(rows.get(t, {}).values()) > 0]
    tokens = manifest.get("tokens") or {}
    token_rows = tokens.get("configs") or {}
    lines = [*_sample_warning(manifest),
        "# MedCorpus",
        "",
        "A deduplicated, decontaminated Chinese/English medical corpus merged from "
        f"{len(included)} public source{'s' if len(included) != 1 else ''}, in "
        f"{len(configs)} configuration{'s' if len(configs) != 1 else ''} "
        f"({', '.join(f'`{t}`' for t in configs) or 'none'}) that load directly with `datasets`:",
        "",
        "| config | split | rows | tokens |",
        "|---|---|---:|---:|",
    ]
    for task in CONFIGS:
        for split in SPLITS:
            n = rows.get(task, {}).get(split, 0)
            if n:
                count = (token_rows.get(task) or {}).get(split)
                lines.append(f"| {task} | {split} | {n:,} | {f'{count:,}' if count is not None else 'n/a'} |")
    if tokens:
        lines += ["", f"Tokens: {tokens.get('label')}."]
    if rows.get("eval"):
        lines += ["", "`eval` holds the benchmark items the training configs were decontaminated against "
                  "(eval-role sources and the held-out splits of training sources), in the task formats, with a "
                  "`task` column saying which columns a row fills; it is never part of training. Its one split is "
                  "`test`; each row's `split` column keeps the upstream split."]
    held_out = [f"`{task}` {split}" for task in TASKS for split in ("validation", "test") if rows.get(task, {}).get(split)]
    if held_out:
        lines += ["", "Held-out splits of training configs come from the upstream files' own splits (for example "
                  "hh-rlhf's `test` files become `reward`'s `test` split): " + ", ".join(held_out) + ". They went "
                  "through the same deduplication as `train`; use them as `eval_dataset`."]
    lines += [
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'sft = load_dataset("ORG/NAME", "sft")          # or the local output folder',
        'bench = load_dataset("ORG/NAME", "eval", split="test")',
        "```",
        "",
        "Rows that could not be converted are kept, with the reason, in "
        "`rejects/rejects-*.parquet`; `manifest.json` records every source's revision, file checksums "
        "and the row counts at every stage, and every shard's checksum.",
        "",
    ]
    return "\n".join(lines)


def _sample_warning(manifest: dict) -> list[str]:
    if not manifest.get("from_mirror"):
        return []
    return ["> [!WARNING]", "> **SAMPLE DATA.** This copy was built from a local mirror (`--mirror`), such as the "
            "bundled samples of `make demo`, not from the full upstream datasets. Do not train on it or publish "
            "it as the corpus.", ""]


def split_cell(entry: dict) -> str:
    """A source's written rows by split: `train 5, validation 2`."""
    by_split = (entry.get("counts") or {}).get("written_by_split") or {}
    return ", ".join(f"{split} {by_split[split]:,}" for split in SPLITS if by_split.get(split)) or "n/a"


def config_summary(manifest: dict) -> list[str]:
    """Rows (and tokens) per config and split, the token method, and what the licence gate left out: the
    lines the build summary prints."""
    rows = split_rows(manifest)
    tokens = manifest.get("tokens") or {}
    lines = []
    for config in CONFIGS:
        per_split = rows.get(config) or {}
        counted = (tokens.get("configs") or {}).get(config) or {}
        parts = [f"{split} {n:,} rows" + (f" / {counted[split]:,} tokens" if split in counted else "")
                 for split in SPLITS if (n := per_split.get(split))]
        if parts:
            lines.append(f"{config}: " + ", ".join(parts))
    if tokens:
        lines.append(f"tokens: {tokens.get('label')}")
    sources = manifest.get("sources") or {}
    left_out = sorted(sid for sid, e in sources.items() if e.get("status") == "skipped" and "licence" in (e.get("error") or ""))
    withheld = sorted(sid for sid, e in sources.items() if e.get("withheld"))
    if left_out:
        lines.append("left out by licence: " + ", ".join(left_out) + " (for private use build with "
                     "--license-profile all and without --license-allow/--license-deny)")
    if withheld:
        lines.append("eval sources used for decontamination only, not written: " + ", ".join(withheld))
    return lines


def _composition(manifest: dict, included: dict[str, dict]) -> str:
    lines = ["## Composition", "", f"![Rows per source and language mix]({CHART_PATH})", ""]
    for task in TASKS:
        members = {sid: e for sid, e in included.items() if e.get("task") == task}
        if not members:
            continue
        task_total = sum(_written(e) for e in members.values())
        lines += [f"### {task}", "",
                  "| source | rows | by split | tokens | share | languages | exact dups | near dups | decontaminated "
                  "| license | upstream |",
                  "|---|---:|---|---:|---:|---|---:|---:|---:|---|---|"]
        for sid, entry in sorted(members.items(), key=lambda kv: (-_written(kv[1]), kv[0])):
            counts = entry.get("counts") or {}
            source_tokens = ((manifest.get("tokens") or {}).get("sources") or {}).get(sid)
            lines.append(
                f"| `{sid}` | {_written(entry):,} | {split_cell(entry)} "
                f"| {f'{source_tokens:,}' if source_tokens is not None else 'n/a'} "
                f"| {_percent(_written(entry), task_total)} "
                f"| {_lang_mix(entry.get('langs') or {})} | {int(counts.get('exact_dup') or 0):,} "
                f"| {int(counts.get('near_dup') or 0):,} | {int(counts.get('decontaminated') or 0):,} "
                f"| {_cell(entry.get('license') or 'unknown')} | {_link(entry)} |"
            )
        lines += [f"| **total** | **{task_total:,}** | | | 100.0% | | | | | | |", ""]
    if not included:
        lines += ["This build contains no rows.", ""]
    return "\n".join(lines)


def _licences(manifest: dict, included: dict[str, dict]) -> str:
    lines = [
        "## Licences",
        "",
        "Every row keeps its source's licence in the `license` column. The corpus as a whole is only as "
        "permissive as its most restrictive source: filter on `source` or `license` to keep the part "
        "you may use.",
        "",
    ]
    by_license: dict[str, list[str]] = {}
    for sid, entry in included.items():
        by_license.setdefault(entry.get("license") or "unknown", []).append(sid)
    lines += ["| licence | sources |", "|---|---|"]
    for licence, ids in sorted(by_license.items()):
        lines.append(f"| {_cell(licence)} | {', '.join(f'`{i}`' for i in sorted(ids))} |")
    lines.append("")
    by_term: dict[str, list[str]] = {}
    for sid, entry in included.items():
        for term in entry.get("license_terms") or []:
            by_term.setdefault(term, []).append(sid)
    for term in (*WARNED_TERMS, "unclear"):
        ids = sorted(by_term.get(term, []))
        if not ids:
            continue
        kind = "Warning" if term in WARNED_TERMS else "Note"
        title, text = TERM_NOTES[term]
        lines += [f"> **{kind}: {title}.** These sources {text}: {', '.join(f'`{i}`' for i in ids)}.", ""]
    unrestricted = sorted(sid for sid, e in included.items() if not e.get("license_terms"))
    if unrestricted:
        lines += ["Sources with no restrictive terms recorded in the catalogue: "
                  + ", ".join(f"`{i}`" for i in unrestricted) + ".", ""]
    build = manifest.get("build") or {}
    for key, label in (("license_allow", "allowed"), ("license_deny", "denied")):
        if build.get(key):
            lines += [f"Licence categories {label} at build time: "
                      + ", ".join(f"`{v}`" for v in build[key]) + ".", ""]
    if build.get("license_profile") == "publishable":
        lines += ["Built with `--license-profile publishable`: sources whose terms forbid redistribution "
                  "(`no-redistribution`, `copyrighted`) were left out (listed below).", ""]
    return "\n".join(lines)


def _columns() -> str:
    return "\n".join([
        "## Columns",
        "",
        "Every config has `id` (stable across builds), `source` (catalogue id), `split`, `lang` "
        "(ISO 639-1 or `und`), `lang_score` (float32, 0..1), `license`, `dup_count` (int32: records "
        "collapsed into this one by deduplication, itself included) and `meta` (a JSON object as a string).",
        "",
        "| config | task columns | format |",
        "|---|---|---|",
        "| pretrain | `text` (string) | plain text |",
        "| sft | `messages`: list of `{role, content, tool_calls}`; `tools` (string or null) | TRL conversational "
        "language modelling: optional `system`, then `user`/`assistant` alternating, ending with `assistant` |",
        "| reward | `prompt`: list of turns; `chosen`, `rejected`: each a list of one `assistant` turn; `tools` | TRL "
        "conversational preference (DPO, reward modelling): the conversation up to the last user (or tool) turn, "
        "then the preferred and the rejected reply |",
        "| eval | `task`, then the columns of that task (the others null) | the benchmarks, in the formats above |",
        "",
        "Tool calling: `tools` is null on plain rows; on tool-calling rows it is a JSON list of tool schemas "
        "(`{type: function, function: {name, description, parameters}}`). A turn that calls tools is an "
        "`assistant` turn with empty `content` and `tool_calls` = `[{type: function, function: {name, arguments}}]` "
        "(`arguments` a JSON object string); each result is a `tool` turn. `tool_calls` is null on every other turn "
        "(Parquet stores one struct for all turns; TRL's trainers drop null keys).",
        "",
        "The sft and reward configs feed TRL's `SFTTrainer`, `DPOTrainer` and `RewardTrainer` "
        "without remapping (decode `tools` with `json.loads` for tool-calling rows); "
        "`medcorpus export --format llamafactory` writes files and a `dataset_info.json` for LLaMA-Factory.",
        "",
    ])


def _build(manifest: dict) -> str:
    build = manifest.get("build") or {}
    dedup = build.get("dedup") or {}
    minhash = dedup.get("minhash") or {}
    decontam = build.get("decontam") or {}
    langid = build.get("langid") or {}
    lines = [
        "## How it was built",
        "",
        f"Built by `{manifest.get('tool', 'medcorpus')}` version {manifest.get('version', '?')}, "
        f"build configuration hash `{manifest.get('config_hash', '?')}`. Per source: fetch at a pinned "
        "revision (checksums in `manifest.json`), convert to the unified schema (rows that fail go to "
        "`rejects`), then per task across all sources: normalise, exact deduplication "
        f"({'on' if dedup.get('exact', True) else 'off'}), MinHash near-deduplication",
    ]
    if minhash:
        lines[-1] += (f" ({minhash.get('num_perm')} permutations, Jaccard threshold "
                      f"{minhash.get('threshold')}, character {minhash.get('ngram')}-grams)")
    else:
        lines[-1] += " (off)"
    if decontam.get("enabled", True) and decontam:
        lines[-1] += (", decontamination against the evaluation sources (overlap threshold "
                      f"{decontam.get('threshold')} on {decontam.get('ngram_zh')}-grams for Chinese, "
                      f"{decontam.get('ngram_en')}-grams for English)")
    elif decontam:
        lines[-1] += ", no decontamination"
    lines[-1] += (", language tagging" + (f" ({', '.join(langid.get('langs') or [])})" if langid else "")
                  + ", and sharded Parquet writing in a deterministic row order.")
    if manifest.get("from_mirror"):
        lines += ["", "> **Warning: sample data.** This copy was built from a local mirror (`--mirror`), e.g. the "
                  "bundled samples, not from the full upstream datasets."]
    lines += ["", "Dedup keeps, in each cluster, the row of the source with the highest priority, then the "
              "longest, then the smallest id.", "", "Full build configuration:", "", "```json",
              json.dumps(build, sort_keys=True, indent=2, ensure_ascii=False), "```", ""]
    return "\n".join(lines)


def _privacy_and_quality(manifest: dict, included: dict[str, dict]) -> str:
    """What the redact and quality stages did, per source (rules in docs/PRIVACY.md)."""
    build = manifest.get("build") or {}
    redact = build.get("redact") or {}
    quality = build.get("quality") or {}
    lines = ["## Personal data and quality filtering", ""]
    if redact.get("enabled", True):
        lines += [
            "Personal data was replaced by typed placeholders before deduplication: `<PHONE>` (Chinese "
            "mobile, landline and 400/800 numbers; US and UK formats), `<ID_NUMBER>` (18-digit resident ID "
            "numbers whose ISO 7064 check digit and birth date are valid, 15-digit legacy ones with a valid "
            "birth date, and any ID, passport, social-security or insurance number after its cue word), "
            "`<EMAIL>`, `<URL>` (including bare domains), `<IP>`, `<RECORD_NO>` (住院号, 门诊号, 病案号, 床号, "
            "MRN and similar after their cue word), `<SOCIAL_ID>` (WeChat, QQ, Weibo and similar ids after "
            "their cue word) and `<NAME>` (only high-precision contexts: a name with 医生/大夫/主任 in a "
            "signature or contact line, after 姓名/接诊医生 and similar cues, 患者 + name + sex/age in a record "
            "header, \"Dr. Name\"). Every text field is rewritten, `meta` included. Clinical numbers (doses, "
            "lab values, blood pressure, dates, ages, ICD codes, drug approval numbers) and lab specimen numbers "
            "after 标本号/样本号/条码 are kept. Names outside those contexts are **not** removed: this is "
            "pattern-based redaction, not a guarantee of anonymity.",
            "",
        ]
    else:
        lines += ["Personal-data redaction was **switched off** for this build.", ""]
    if quality.get("enabled", True):
        lines += [
            "Rows were dropped, each under one reason: `mojibake` (mojibake or U+FFFD share above "
            f"{quality.get('max_mojibake_ratio')}), `char_repetition` (above {quality.get('max_char_repetition')}), "
            f"`line_repetition` (above {quality.get('max_line_repetition')}), `short_answer` (fewer than "
            f"{quality.get('min_answer_chars')} characters), `filler_answer` (only 同上/谢谢/不知道...), "
            f"`advertising` (more than {quality.get('max_ad_hits')} advertising or contact cues) and `echo` "
            "(the answer repeats the question). Sources may override these thresholds.",
            "",
        ]
    else:
        lines += ["Quality filtering was **switched off** for this build.", ""]
    rows = []
    for sid, entry in sorted(included.items()):
        counts = entry.get("counts") or {}
        redacted = counts.get("redacted") or {}
        dropped = counts.get("low_quality_by_reason") or {}
        if redacted or dropped:
            rows.append(f"| `{sid}` | {', '.join(f'{k} {v:,}' for k, v in sorted(redacted.items())) or '—'} "
                        f"| {', '.join(f'{k} {v:,}' for k, v in sorted(dropped.items())) or '—'} |")
    if rows:
        lines += ["| source | placeholders inserted | rows dropped (by reason) |", "|---|---|---|", *rows, ""]
    else:
        lines += ["No source had personal data replaced or rows dropped by the quality filter.", ""]
    return "\n".join(lines)


def _not_included(manifest: dict) -> str:
    sources = manifest.get("sources") or {}
    evals = sorted(sid for sid, e in sources.items() if e.get("role") == "eval")
    in_eval = [sid for sid in evals if int((sources[sid].get("counts") or {}).get("eval_written") or 0)]
    withheld = [sid for sid in evals if sources[sid].get("withheld")]
    missing = sorted(sid for sid, e in sources.items()
                     if e.get("role", "train") == "train" and _written(e) == 0)
    if not evals and not missing:
        return ""
    lines = ["## Evaluation sets and sources not in the training configs", ""]
    if in_eval:
        lines += ["Evaluation sets, used to decontaminate the training data and published as the `eval` config: "
                  + ", ".join(f"{_link(sources[s])} (`{s}`, {int(sources[s]['counts']['eval_written']):,} rows)"
                              for s in in_eval) + ".", ""]
    if withheld:
        lines += ["Evaluation sets used only to decontaminate the training data, and not redistributed (their "
                  "licence was excluded at build time): "
                  + ", ".join(f"{_link(sources[s])} (`{s}`: {_cell(sources[s]['withheld'])})" for s in withheld)
                  + ".", ""]
    if missing:
        lines += ["| source | status | reason |", "|---|---|---|"]
        for sid in missing:
            entry = sources[sid]
            error = (entry.get("error") or "").strip().splitlines()
            reason = error[0][:200] if error else "no rows left after filtering"
            lines.append(f"| `{sid}` | {_cell(entry.get('status') or 'ok')} | {_cell(reason)} |")
        lines.append("")
        if any("--license-profile" in (sources[sid].get("error") or "") for sid in missing):
            lines += ["Sources left out by the licence profile may still be used privately: build with "
                      "`medcorpus build --license-profile all` (the default), and do not publish that output.", ""]
    return "\n".join(lines)


def _citations(manifest: dict, included: dict[str, dict]) -> str:
    sources = manifest.get("sources") or {}
    cited = {sid: e for sid, e in sources.items() if sid in included or e.get("role") == "eval"}
    lines = ["## Citations", "", "Please cite the upstream work of every source you use.", ""]
    for sid, entry in sorted(cited.items()):
        lines.append(f"### {_cell(entry.get('name') or sid)} (`{sid}`)")
        lines.append("")
        citation = (entry.get("citation") or "").strip()
        if citation:
            fence = "```bibtex" if citation.startswith("@") else "```text"
            lines += [fence, citation, "```"]
        else:
            lines.append(f"No citation given upstream; please link {entry.get('homepage') or 'the source'}.")
        lines.append("")
    return "\n".join(lines)
