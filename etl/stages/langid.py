"""langid: `lang` and `lang_score` for every row, deterministic, right on short and code-mixed text.

Script counts, vectorised (one pass classifies every character, etl.charclass; the word and frame
counts of mixed text are polars regexes), decide (bench/RESULTS.md measures this against lingua and
langdetect on a labelled set):
- a Han character, a kana or hangul character, or a word of a word-spaced script each count one
  unit; kana marks Japanese, whose Han characters then count as Japanese;
- Chinese mixed with English is decided by the share of the content, counted in words: an English
  word is one unit and a Chinese word about two Han characters, so each Han character is half a unit.
  Latin tokens that are not words of a sentence do not count in mixed text: all-capital abbreviations
  (CT, WBC), numbers with units (5mm, 7.8mmol/L) and dosing codes (bid, prn). So "最近 insomnia 很严重，
  能吃 melatonin 吗", "CT示右肺下叶结节，5mm" and "metoprolol 500mg bid 可以吗" are Chinese, while "Is
  布洛芬缓释胶囊 safe for children under six?" and "Take 阿莫西林 three times a day." are English: a drug
  named in Chinese does not outvote the English sentence around it (ties go to Chinese). Grammatical
  words (is, the, for, can…; 吗, 的, 可以, 怎么…) mark the sentence's frame and count once more in mixed
  text, so "insulin glargine 50mg bid 可以吗" stays Chinese. The mere presence of Han characters never
  decides;
- a text whose script only one configured language uses (Han → zh, Latin → en when en is the only
  Latin-script language) gets that language, `lang_score` being the script's share of the units;
- only when several configured languages share the winning script (say en, fr, de) does lingua,
  restricted to the configured languages, choose among them.
A text with no letters is `und` with score 0, as is one in a script no configured language uses.
SFT rows are judged on their user and assistant turns together (text.dialogue_texts).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import polars as pl
import pyarrow as pa
from lingua import IsoCode639_1, LanguageDetector, LanguageDetectorBuilder

from etl.catalog import LangIdConfig
from etl.charclass import char_classes
from etl.stages.base import Stage
from etl.stages.text import dialogue_texts, text_columns

# The letters of each script; the script a language is written in (Latin when not listed).
SCRIPTS: dict[str, str] = {
    "Han": r"\p{Han}",
    "Kana": r"[\p{Hiragana}\p{Katakana}]",
    "Hangul": r"\p{Hangul}",
    "Latin": r"\p{Latin}",
    "Cyrillic": r"\p{Cyrillic}",
    "Arabic": r"\p{Arabic}",
    "Greek": r"\p{Greek}",
}
# Scripts whose unit is a word (a run of letters); in the others each letter is a unit.
WORD_SCRIPTS = ("Latin", "Cyrillic", "Arabic", "Greek")
LANG_SCRIPT = {"zh": "Han", "ja": "Kana", "ko": "Hangul", "ru": "Cyrillic", "uk": "Cyrillic", "bg": "Cyrillic",
               "sr": "Cyrillic", "ar": "Arabic", "fa": "Arabic", "el": "Greek"}
_LINGUA_CHARS = 2000
# A Chinese word is about two Han characters; an English word is one unit (see the module docstring).
HAN_PER_WORD = 2.0
# Latin tokens that carry no sentence in mixed text: all-capital abbreviations, numbers with units,
# dosing codes. `(?-u:\b)` is an ASCII word boundary, so "ST段" still counts as the abbreviation ST.
# Grammatical words mark the language a mixed sentence is written in (its frame): in mixed text each counts
# once more for its script, so "Is 布洛芬 safe?" is English and "insulin glargine 50mg bid 可以吗" Chinese.
_EN_FRAME = (r"(?i)(?-u:\b)(?:is|are|was|were|be|the|a|an|of|for|to|in|on|at|with|and|or|but|can|could|should|"
             r"would|will|do|does|did|i|you|he|she|it|we|they|my|your|his|her|this|that|what|how|why|when)(?-u:\b)")
_ZH_FRAME = r"吗|呢|吧|的|了|是|我|你|他|她|可以|能|怎么|什么|为什么|有|在|和|就|不|也|要|会|请问"
_NOT_WORDS = (r"(?-u:\b)\p{Lu}{2,}(?-u:\b)|\d+(?:\.\d+)?\p{Latin}+(?:/\p{Latin}+)?"
              r"|(?i)(?-u:\b)(?:bid|tid|qid|qd|qn|qod|prn|po|iv|im|ih|sc|hs)(?-u:\b)")


class LanguageTagger:
    """Tags texts with one of `langs` (ISO 639-1) or `und`."""

    def __init__(self, langs: tuple[str, ...]) -> None:
        self.langs = langs
        self.script_langs: dict[str, list[str]] = {}
        for lang in langs:
            self.script_langs.setdefault(LANG_SCRIPT.get(lang, "Latin"), []).append(lang)

    def _only_lang(self, script: str) -> str:
        """The one configured language written in `script`, or "" when none or several are."""
        candidates = self.script_langs.get(script, [])
        return candidates[0] if len(candidates) == 1 else ""

    @cached_property
    def lingua(self) -> LanguageDetector:
        codes = [IsoCode639_1.from_str(lang) for lang in self.langs]
        if len(codes) == 1:
            return LanguageDetectorBuilder.from_iso_codes_639_1(*codes, IsoCode639_1.EN).build()
        return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()

    def tag(self, texts: list[str] | pl.Series) -> tuple[list[str], np.ndarray]:
        series = pl.Series(texts, dtype=pl.String).fill_null("")
        names = list(SCRIPTS)
        # One pass over the text classifies every character by script (etl.charclass).
        chars = char_classes(series, tuple(SCRIPTS.values()))
        counts = np.stack([chars.runs(bit) if name in WORD_SCRIPTS else chars.count(bit)
                           for bit, name in enumerate(names)], axis=1)
        kana, han, latin = names.index("Kana"), names.index("Han"), names.index("Latin")
        japanese = counts[:, kana] > 0
        counts[japanese, kana] += counts[japanese, han]
        counts[japanese, han] = 0
        total = counts.sum(axis=1)
        # Han against Latin by the share of the content, in words (see the module docstring).
        weighted = counts.astype(np.float64)
        weighted[:, han] /= HAN_PER_WORD
        mixed = (counts[:, han] > 0) & (counts[:, latin] > 0)
        if mixed.any():  # only the mixed rows pay for the word and frame counts
            rows = np.flatnonzero(mixed)
            sub = series.gather(rows)
            words = sub.str.replace_all(_NOT_WORDS, " ").str.count_matches(SCRIPTS["Latin"] + "+").to_numpy()
            weighted[rows, latin] = words + sub.str.count_matches(_EN_FRAME).to_numpy()  # ties go to Han (first)
            weighted[rows, han] += sub.str.count_matches(_ZH_FRAME).to_numpy()
        top = weighted.argmax(axis=1)
        share = np.divide(weighted[np.arange(len(texts)), top], weighted.sum(axis=1), out=np.zeros(len(texts)),
                          where=total > 0)
        single = np.array([self._only_lang(name) for name in names], dtype=object)
        shared = np.array([len(self.script_langs.get(name, [])) > 1 for name in names])
        lettered = total > 0
        tagged = lettered & (single[top] != "")
        langs = np.where(tagged, single[top], "und").tolist()
        scores = np.where(tagged, np.round(share, 4), 0.0).astype(np.float32)
        ask = np.flatnonzero(lettered & shared[top]).tolist()
        if ask:
            answers = self.lingua.compute_language_confidence_values_in_parallel(
                [series[i][:_LINGUA_CHARS] for i in ask])
            for i, values in zip(ask, answers, strict=True):
                best = values[0]
                code = best.language.iso_code_639_1.name.lower()
                if code in self.langs:
                    langs[i], scores[i] = code, round(best.value, 4)
        return langs, scores


class LangId(Stage):
    """Reads the text columns; writes `lang` (ISO 639-1 or `und`) and `lang_score` (float32)."""

    name = "langid"
    writes = ("lang", "lang_score")

    def __init__(self, task: str, config: LangIdConfig) -> None:
        self.task = task
        self.reads = tuple(text_columns(task))
        self.tagger = LanguageTagger(config.langs)

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        langs, scores = self.tagger.tag(dialogue_texts(batch, self.task))
        for name, values in (("lang", pa.array(langs, type=pa.string())),
                             ("lang_score", pa.array(scores, type=pa.float32()))):
            index = batch.schema.get_field_index(name)
            batch = batch.set_column(index, name, values) if index >= 0 else batch.append_column(name, values)
        return batch
