import json
import random

import numpy as np
import pyarrow as pa
import pytest

from etl.catalog import DedupConfig, MinHashConfig
from etl.stages.dedup import (
    UNIT_SHINGLES,
    ExactDedup,
    NearDedup,
    TextBlocks,
    block_path,
    bucket_pairs,
    cuts,
    explain_dups,
    jaccards,
    read_rows,
    verify_pairs,
    write_block,
)
from etl.stages.memory import run_in_memory
from etl.stages.minhash import collision_probability, lsh_params, unique_counts
from etl.stages.normalise import Normalise
from tests.stage_rows import pretrain, sft

BASE = ("患者男，45岁，因反复胸闷、气短3年，加重1周入院。既往有高血压病史10年，规律服用氨氯地平，"
        "近期夜间阵发性呼吸困难，不能平卧，双下肢轻度水肿。心电图提示ST段压低，考虑冠心病、心功能不全，"
        "建议完善心脏彩超及冠脉造影检查，并调整降压方案。")


def run(table, stages, tmp_path, task="pretrain"):
    return run_in_memory(task, table, [Normalise(task), *stages], tmp_path / "work", tmp_path / "reports")


def chain(config: DedupConfig | None = None, task: str = "pretrain", unit: int = UNIT_SHINGLES):
    config = config or DedupConfig()
    return [ExactDedup(config), NearDedup(config.minhash, config.report_clusters, task, unit)]


def test_lsh_params_follow_threshold():
    bands, rows = lsh_params(0.8, 128)
    assert bands * rows <= 128
    assert collision_probability(0.9, bands, rows) > 0.99
    assert collision_probability(0.5, bands, rows) < 0.05
    low_bands, low_rows = lsh_params(0.5, 128)
    assert low_rows < rows


@pytest.mark.parametrize("unit", [1, UNIT_SHINGLES])   # one row per block and one pair per task, or one of each
def test_planted_cluster_merged_and_dose_pair_kept(tmp_path, unit):
    texts = [
        BASE,
        BASE.replace("胸闷", "胸悶").replace("，", ", "),          # punctuation, spacing, Traditional: exact key
        BASE.replace("规律", "規律").replace("夜间", "夜問"),       # two character edits: near
        BASE.replace("近期夜间阵发性呼吸困难，不能平卧，", "") + "近期夜间阵发性呼吸困难，不能平卧。",  # reordered
        "阿司匹林100mg，每日一次，饭后服用。" + BASE,
        "阿司匹林300mg，每日一次，饭后服用。" + BASE,
        "头晕",
        "头晕",
        "头疼",
    ]
    out, removed = run(pretrain(texts), chain(unit=unit), tmp_path)
    kept = out.column("text").to_pylist()
    assert kept.count("头晕") == 1 and "头疼" in kept
    assert texts[4] in kept and texts[5] in kept
    assert sum(t in kept for t in texts[:4]) == 1
    assert removed["exact_dedup"]["src"] == 2 and removed["near_dedup"]["src"] == 2
    counts = dict(zip(out.column("text").to_pylist(), out.column("dup_count").to_pylist(), strict=True))
    assert counts["头晕"] == 2
    assert max(counts[t] for t in texts[:4] if t in counts) == 4


def test_survivor_rule_priority_then_length_then_id(tmp_path):
    longer = BASE + "随访。"
    table = pretrain([BASE, longer, BASE], sources=["low", "low", "high"], priorities=[10, 10, 90],
                     ids=["low/b", "low/a", "high/z"])
    out, _ = run(table, chain(), tmp_path)
    assert out.column("id").to_pylist() == ["high/z"]
    meta = json.loads(out.column("meta")[0].as_py())
    assert meta["dedup"]["absorbed"] == {"low": 2}
    assert out.column("dup_count").to_pylist() == [3]
    same = pretrain([BASE, BASE.replace("。", "!"), longer], ids=["s/b", "s/a", "s/c"])
    out, _ = run(same, chain(), tmp_path)
    assert out.column("id").to_pylist() == ["s/c"]
    out, _ = run(pretrain([BASE, BASE.replace("。", "!")], ids=["s/b", "s/a"]), chain(), tmp_path)
    assert out.column("id").to_pylist() == ["s/a"]


def test_sft_answers_are_part_of_the_key(tmp_path):
    question = ("user", "头晕想吐怎么办？")
    table = sft([[question, ("assistant", "多休息，注意补充水分。" * 5)],
                 [question, ("assistant", "建议尽快就医，排查耳石症或颈椎问题。" * 5)],
                 [("user", "頭暈想吐怎麼辦"), ("assistant", "多休息,注意补充水分." * 5)]])
    out, removed = run(table, chain(), tmp_path, task="sft")
    assert out.num_rows == 2
    assert removed["exact_dedup"]["src"] == 1


@pytest.mark.parametrize("exact", [True, False])
def test_short_texts_match_only_when_identical(tmp_path, exact):
    config = DedupConfig(exact=exact, minhash=MinHashConfig(ngram=5))
    out, _ = run(pretrain(["胃疼", "胃疼。", "胃疼吗", "yes", "Yes!"]), chain(config)[0 if exact else 1:], tmp_path)
    # The longer spelling survives (survivor rule); "胃疼吗" is another text.
    assert sorted(out.column("text").to_pylist()) == sorted(["胃疼。", "胃疼吗", "Yes!"])


def test_deterministic_and_explained(tmp_path):
    texts = [BASE, BASE.replace("规律", "規律").replace("夜间", "夜問"), BASE + "。", "另一段完全不同的文字，讲的是糖尿病饮食控制。"]
    first, _ = run(pretrain(texts), chain(), tmp_path / "a")
    second, _ = run(pretrain(texts), chain(), tmp_path / "b")
    assert first.drop_columns(["_key", "_len"]).equals(second.drop_columns(["_key", "_len"]))
    report = explain_dups(tmp_path / "a" / "reports", 5)
    assert "KEEP" in report and "drop" in report and "near_dedup" in report


def test_normalise_keys_whole_rows_like_row_texts(tmp_path):
    from etl.stages.text import row_texts
    from etl.textnorm import match_key

    table = sft([[("system", "Be kind."), ("user", "頭暈，怎麼辦？"), ("assistant", "  多休息&nbsp;。")]])
    out = Normalise("sft").apply(table.to_batches()[0])
    assert out.column("messages").to_pylist()[0][2]["content"] == "多休息\xa0。"
    assert out.column("_key").to_pylist() == [match_key(t) for t in row_texts(out, "sft")]
    assert out.column("_len").to_pylist() == [len(row_texts(out, "sft")[0])]


REPORT = ("请检查下面这份超声报告有没有错别字：肝脏大小形态正常，包膜光滑，实质回声均匀，肝内管道结构清晰，门静脉内径正常。"
          "胆囊大小正常，壁光滑，腔内未见明显异常回声。胰腺大小形态正常，实质回声均匀，主胰管未见扩张。脾脏大小正常，"
          "实质回声均匀。双肾大小形态正常，皮髓质分界清晰，集合系统未见分离，双侧输尿管未见扩张。膀胱充盈良好，壁光滑，"
          "腔内未见明显异常回声。超声提示：肝、胆、胰、脾、双肾、膀胱未见明显异常。")
REPORT_TYPO = REPORT.replace("实质回声均匀。双肾", "实质回声均习。双肾")


def _contrastive_and_true_pair() -> tuple:
    return sft([
        [("user", REPORT), ("assistant", "报告无错别字。")],
        [("user", REPORT_TYPO), ("assistant", "报告中的错别字是“均习”，应为“均匀”。")],
        # a real near-duplicate of the first row: a spacing change and one character in each side
        [("user", REPORT.replace("肝脏大小", "肝脏 大小").replace("门静脉", "门脉")), ("assistant", "报告无错别字.")],
    ], sources=["a", "b", "c"])


def test_split_fields_keep_a_contrastive_pair_and_merge_a_real_duplicate(tmp_path):
    config = DedupConfig()
    assert config.minhash.fields == "split"          # DESIGN §5: the default
    out, removed = run(_contrastive_and_true_pair(), chain(config, "sft"), tmp_path, task="sft")
    answers = [m[-1]["content"] for m in out.column("messages").to_pylist()]
    assert answers == ["报告无错别字。", "报告中的错别字是“均习”，应为“均匀”。"]
    assert removed["near_dedup"] == {"c": 1}
    assert json.loads(out.column("meta").to_pylist()[0])["dedup"]["absorbed"] == {"c": 1}


def test_whole_row_fields_merge_the_contrastive_pair(tmp_path):
    config = DedupConfig(minhash=MinHashConfig(fields="whole"))
    out, removed = run(_contrastive_and_true_pair(), chain(config, "sft"), tmp_path, task="sft")
    assert out.num_rows == 1                         # the shared report dominates the whole-row key
    assert removed["near_dedup"] == {"a": 1, "c": 1}  # the longest row survives: "无错别字" is lost


def _cjk(rng, n: int) -> str:
    return "".join(chr(0x4E00 + rng.randrange(6000)) for _ in range(n))


def _edited(text: str, at: int, rng) -> str:
    return text[:at] + _cjk(rng, 3) + text[at + 3:]


def _near_dup_rows():
    """SFT rows whose near-duplicates are spread over the table (so that they fall in different
    blocks): a chain where only neighbours are similar; a triangle A–B, A–C whose B–C responses differ
    (a side failure between rows already connected); a contrastive pair (the response side refuses);
    a dose pair (numbers refuse); unrelated rows in between."""
    rng = random.Random(3)
    chain_prompt, chain_answer = _cjk(rng, 150), _cjk(rng, 100)
    chain = [chain_prompt]
    for k in range(1, 6):
        chain.append(_edited(chain[-1], 20 * k, rng))
    rows = [[("user", p), ("assistant", chain_answer)] for p in chain]
    question, answer = _cjk(rng, 200), _cjk(rng, 100)
    rows += [[("user", question), ("assistant", answer)],
             [("user", question), ("assistant", _cjk(rng, 5) + answer[5:])],
             [("user", question), ("assistant", answer[:-5] + _cjk(rng, 5))]]
    report = _cjk(rng, 200)
    rows += [[("user", report), ("assistant", "报告无错别字。")],
             [("user", report), ("assistant", "错别字是“均习”。")]]
    dose = _cjk(rng, 120)
    rows += [[("user", dose), ("assistant", "阿司匹林100mg，每日一次。")],
             [("user", dose), ("assistant", "阿司匹林300mg，每日一次。")]]
    rows += [[("user", _cjk(rng, 80)), ("assistant", _cjk(rng, 60))] for _ in range(14)]
    order = list(range(len(rows)))
    random.Random(5).shuffle(order)
    return sft([rows[i] for i in order], sources=[f"s{i % 3}" for i in range(len(rows))])


class _Recording(NearDedup):
    """NearDedup that keeps its candidate pairs, for the sequential reference."""

    def candidate_pairs(self, spill):
        self.pairs = super().candidate_pairs(spill)
        return self.pairs


def _sequential(table, pairs, config):
    """The verification as a plain loop over the sorted pairs, on Python sets: skip pairs already
    connected, check numbers, whole row, then each side. Returns figures, clusters and the number of
    side failures skipped because their rows were already connected."""
    from etl.stages.minhash import shingle_hashes
    from etl.stages.text import side_text_series
    from etl.textnorm import match_keys, numbers_of

    def sets(keys):
        return [{int(h) >> 32 for h in shingle_hashes([k], config.ngram)[0]} for k in keys]

    keys = table.column("_key").to_pylist()
    views = [sets(keys), *(sets(match_keys(side).to_list()) for side in side_text_series(table, "sft"))]
    numbers = numbers_of(keys)

    def jaccard(view, a, b):
        union = len(view[a] | view[b])
        return len(view[a] & view[b]) / union if union else 1.0

    parent: dict[int, int] = {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    verified = rejected = skipped = 0
    for a, b in pairs.tolist():
        if numbers[a] != numbers[b]:
            continue
        whole = jaccard(views[0], a, b) >= config.threshold
        sides = all(jaccard(view, a, b) >= config.threshold for view in views[1:])
        if find(a) == find(b):
            skipped += whole and not sides
            continue
        if not whole:
            continue
        if not sides:
            rejected += 1
            continue
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        parent[max(find(a), find(b))] = min(find(a), find(b))
        verified += 1
    clusters: dict[int, set[int]] = {}
    for row in parent:
        clusters.setdefault(find(row), set()).add(row)
    return ({"verified_pairs": verified, "rejected_by_side": rejected}, sorted(map(sorted, clusters.values())),
            skipped, lambda a, b: jaccard(views[0], a, b))


def _clusters_of(resolution):
    groups: dict[int, set[int]] = {}
    for row, survivor in zip(resolution.drop.tolist(), resolution.absorbed_by.tolist(), strict=True):
        groups.setdefault(survivor, {survivor}).add(row)
    return sorted(map(sorted, groups.values()))


def test_blocked_verification_matches_the_sequential_loop_at_any_unit_size(tmp_path):
    table = _near_dup_rows()
    normalised, _ = run_in_memory("sft", table, [Normalise("sft")], tmp_path / "n", tmp_path / "n")
    config = MinHashConfig()
    results = []
    # unit 1: one row per block and one pair per task, so every pair straddles two blocks; 700 and
    # 2000: a few rows per block, in scan batches of 4 rows; the default: one block, one task.
    for unit in (1, 700, 2000, UNIT_SHINGLES):
        stage = _Recording(config, report_clusters=20, task="sft", unit=unit)
        out, removed = run_in_memory("sft", table, [Normalise("sft"), stage], tmp_path / f"w{unit}",
                                     tmp_path / f"r{unit}", batch_rows=4)
        report = (tmp_path / f"r{unit}" / "dup_clusters-sft-near_dedup.jsonl").read_text(encoding="utf-8")
        results.append((stage.summary(), out.column("id").to_pylist(), removed, _clusters_of(stage.resolution),
                        report))
        assert not (tmp_path / f"w{unit}" / "sft" / "near_dedup" / "blocks").exists()   # scratch removed
    assert all(result == results[0] for result in results[1:])
    figures, clusters, skipped, similarity = _sequential(normalised, stage.pairs, config)
    summary, _, removed, found, report = results[0]
    assert {k: summary[k] for k in figures} == figures
    assert found == clusters
    ids = normalised.column("id").to_pylist()
    # the chain (6 rows) and the triangle (3 rows) merge; the contrastive pair and the dose pair do not
    assert sorted(len(c) for c in clusters) == [3, 6]
    # Side failures count only between rows not yet connected in the sorted pair order: 2 counted
    # (the contrastive pair, a chain pair met before its rows were joined), 4 skipped (the triangle's
    # B–C, chain pairs met after); counting every side failure would give 6.
    assert figures == {"verified_pairs": 7, "rejected_by_side": 2} and skipped == 4
    assert sum(removed["near_dedup"].values()) == 7
    row_of = {i: r for r, i in enumerate(ids)}
    for line in report.splitlines():
        members = json.loads(line)["members"]
        for m in members[1:]:
            assert m["jaccard_to_survivor"] == round(similarity(row_of[members[0]["id"]], row_of[m["id"]]), 3)


def test_jaccards_of_many_pairs_at_once():
    rng = random.Random(1)
    values = [0, 1, *range(2**32 - 48, 2**32)]   # the packed sort key must keep the lowest and highest hashes apart
    lists = [sorted(rng.sample(values, rng.randrange(0, 20))) for _ in range(40)]
    a, b = lists[:20], lists[20:]
    found = jaccards(pa.array(a, pa.large_list(pa.uint32())), pa.array(b, pa.large_list(pa.uint32())))
    expected = [len(set(x) & set(y)) / len(set(x) | set(y)) if x or y else 1.0 for x, y in zip(a, b, strict=True)]
    assert found.tolist() == expected


def _bucket_pairs_by_hand(hashes, rows):
    buckets = {}
    for h, r in zip(hashes, rows, strict=True):
        buckets.setdefault(h, []).append(r)
    pairs = set()
    for members in buckets.values():
        members = sorted(members)
        if len(members) <= 8:
            pairs |= {(a, b) for i, a in enumerate(members) for b in members[i + 1:]}
        else:
            pairs |= {(members[0], b) for b in members[1:]}
    return pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bucket_pairs_are_the_buckets_pairs(seed):
    """Buckets of every size from 1 to 30 (all pairs up to 8 rows, the smallest row with the others
    above), hashes across the whole uint64 range, rows in any order; then merged across bands."""
    rng = random.Random(seed)
    hashes, rows = [], []
    for size in [*range(1, 31), *(rng.randrange(1, 12) for _ in range(200))]:
        bucket = rng.choice([0, 2**64 - 1, rng.randrange(2**64)])
        hashes += [bucket] * size
    rows = rng.sample(range(2**32), len(hashes))
    shuffled = rng.sample(range(len(hashes)), len(hashes))
    h = np.array([hashes[i] for i in shuffled], dtype=np.uint64)
    r = np.array([rows[i] for i in shuffled], dtype=np.int64)
    found = bucket_pairs(h, r)
    assert found.dtype == np.uint64 and (np.diff(found.astype(np.float64)) > 0).all()
    assert _unpacked(found) == sorted(_bucket_pairs_by_hand(h.tolist(), r.tolist()))
    other = bucket_pairs(h[::-1].copy(), r)   # another band: other buckets
    expected = sorted(_bucket_pairs_by_hand(h.tolist(), r.tolist()) | _bucket_pairs_by_hand(h[::-1].tolist(), r.tolist()))
    assert _unpacked(unique_counts(np.concatenate([found, other, found]))[0]) == expected
    assert _unpacked(bucket_pairs(np.array([5], np.uint64), np.array([3]))) == []
    with pytest.raises(ValueError, match="2\\^32 rows"):
        bucket_pairs(h, r + 2**32)


def _unpacked(keys):
    return [(int(k) >> 32, int(k) & 0xFFFFFFFF) for k in keys]


def test_cuts_bound_each_unit():
    sizes = np.array([3, 1, 5, 0, 2, 9, 1])
    ends = cuts(sizes, 5)
    assert ends.tolist() == [2, 4, 5, 6, 7]        # [3,1] [5,0] [2] [9] alone, though above the budget [1]
    assert cuts(sizes, 1000).tolist() == [7]


# Keys a block must carry through unchanged: empty (no shingle), shorter than the n-gram (one shingle
# for the whole key), exactly one n-gram, characters outside the BMP, numbers, and near-duplicates.
BLOCK_KEYS = ["", "a", "头晕", "abcd", "abcdeabcdeabcde", "𠀀𠀁𠀂𠀃𠀄😀", "阿司匹林100mg每日一次" + BASE,
              "阿司匹林300mg每日一次" + BASE, BASE, BASE.replace("规律", "規律"), BASE[:60], "头晕", ""]


def test_blocks_carry_each_row_text_and_verify_like_python_sets(tmp_path):
    from etl.stages.minhash import shingle_hashes
    from etl.textnorm import numbers_of

    ngram = 4
    rows = np.arange(100, 100 + len(BLOCK_KEYS), dtype=np.int64)
    directory = str(tmp_path)
    table = pa.table({"_row": rows, "_key": BLOCK_KEYS})
    split = 5   # two blocks, so pairs straddle files
    written = [write_block(ngram, None, (block_path(directory, b), part))
               for b, part in enumerate([table.slice(0, split), table.slice(split)])]
    assert np.concatenate([r for r, _ in written]).tolist() == rows.tolist()
    sets = [{int(h) >> 32 for h in shingle_hashes([k], ngram)[0]} for k in BLOCK_KEYS]
    counts = np.concatenate([c for _, c in written])
    # what sizes the verification tasks: one shingle per window (one for a short key), never fewer than the set
    assert counts.tolist()[:6] == [0, 1, 1, 1, 12, 3] and all(c >= len(x) for c, x in zip(counts, sets, strict=True))

    block = np.array([0] * split + [1] * (len(BLOCK_KEYS) - split))
    position = np.concatenate([np.arange(split), np.arange(len(BLOCK_KEYS) - split)])
    located = (block.astype(np.int64) << 32) | position
    assert read_rows(directory, located, "_row").to_pylist() == rows.tolist()
    assert read_rows(directory, located, "whole").to_pylist() == BLOCK_KEYS
    assert read_rows(directory, located[[1, 6, 7]], "whole").to_pylist() == [BLOCK_KEYS[i] for i in (1, 6, 7)]
    numbers = read_rows(directory, located, "numbers").to_pylist()
    assert numbers == numbers_of(BLOCK_KEYS) and numbers[6] != numbers[7] and numbers[8] == numbers[9] != ""

    a, b = np.triu_indices(len(BLOCK_KEYS), k=1)
    for threshold, match_numbers in ((0.8, True), (0.8, False), (0.3, False)):
        found = verify_pairs(threshold, match_numbers, ("whole",), ngram, directory,
                             (block[a], position[a], block[b], position[b]))
        expected = [(not match_numbers or numbers_of([BLOCK_KEYS[i]]) == numbers_of([BLOCK_KEYS[j]]))
                    and (len(sets[i] & sets[j]) / len(sets[i] | sets[j]) if sets[i] | sets[j] else 1.0) >= threshold
                    for i, j in zip(a.tolist(), b.tolist(), strict=True)]
        assert found.tolist() == expected
    pairs = {(BLOCK_KEYS[i], BLOCK_KEYS[j]) for i, j, ok in zip(a, b, found, strict=True) if ok}
    assert ("头晕", "头晕") in pairs and ("", "") in pairs and (BASE, BASE.replace("规律", "規律")) in pairs


def test_whole_row_blocks_are_gone_before_the_sides_are_written(tmp_path, monkeypatch):
    seen: list[tuple[str | None, list[str]]] = []
    write = TextBlocks.write.__func__

    def recording(cls, scan, rows, directory, ctx, ngram, task, unit):
        seen.append((task, sorted(p.name for p in directory.parent.iterdir())))
        return write(cls, scan, rows, directory, ctx, ngram, task, unit)

    monkeypatch.setattr(TextBlocks, "write", classmethod(recording))
    stage = NearDedup(MinHashConfig(), task="sft")
    run_in_memory("sft", _near_dup_rows(), [Normalise("sft"), stage], tmp_path / "w", tmp_path / "r")
    assert stage.summary()["verified_pairs"] == 7
    assert seen == [(None, ["whole"]), ("sft", ["sides"])]
