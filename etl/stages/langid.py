"""langid: `lang` and `lang_score` for every row, deterministic, right on short and code-mixed text.

Script counts, vectorised in polars, decide (bench/RESULTS.md measures this against lingua and
langdetect on a labelled set):
- a Han character, a kana or hangul character, or a word of a word-spaced script each count one
  unit; kana marks Japanese, whose Han characters then count as Japanese;
- Chinese with English in it ("最近 insomnia 很严重", "CT示右肺下叶结节，5mm", "metoprolol 500mg bid
  可以吗") is Chinese: English abbreviations and units (words of up to three letters) do not count
  against the Han characters, and the text is Chinese when its Han characters at least equal its
  longer Latin words. lingua, even restricted to zh+en, calls a share of these English;
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
from etl.stages.base import Stage
from etl.stages.text import dialogue_texts, text_columns

# Unit patterns per script; the script a language is written in (Latin when not listed).
SCRIPTS: dict[str, str] = {
    "Han": r"\p{Han}",
    "Kana": r"[\p{Hiragana}\p{Katakana}]",
    "Hangul": r"\p{Hangul}",
    "Latin": r"\p{Latin}+",
    "Cyrillic": r"\p{Cyrillic}+",
    "Arabic": r"\p{Arabic}+",
    "Greek": r"\p{Greek}+",
}
LANG_SCRIPT = {"zh": "Han", "ja": "Kana", "ko": "Hangul", "ru": "Cyrillic", "uk": "Cyrillic", "bg": "Cyrillic",
               "sr": "Cyrillic", "ar": "Arabic", "fa": "Arabic", "el": "Greek"}
_LINGUA_CHARS = 2000


class LanguageTagger:
    """Tags texts with one of `langs` (ISO 639-1) or `und`."""

    def __init__(self, langs: tuple[str, ...]) -> None:
        self.langs = langs
        self.script_langs: dict[str, list[str]] = {}
        for lang in langs:
            self.script_langs.setdefault(LANG_SCRIPT.get(lang, "Latin"), []).append(lang)

    @cached_property
    def lingua(self) -> LanguageDetector:
        codes = [IsoCode639_1.from_str(lang) for lang in self.langs]
        if len(codes) == 1:
            return LanguageDetectorBuilder.from_iso_codes_639_1(*codes, IsoCode639_1.EN).build()
        return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()

    def tag(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        series = pl.Series(texts, dtype=pl.String).fill_null("")
        names = list(SCRIPTS)
        counts = np.stack([series.str.count_matches(SCRIPTS[name]).to_numpy() for name in names], axis=1)
        kana, han, latin = names.index("Kana"), names.index("Han"), names.index("Latin")
        japanese = counts[:, kana] > 0
        counts[japanese, kana] += counts[japanese, han]
        counts[japanese, han] = 0
        total = counts.sum(axis=1)
        # Han against Latin: abbreviations and units do not outvote Chinese characters.
        long_words = series.str.count_matches(r"\p{Latin}{4,}").to_numpy()
        weighted = counts.copy()
        mixed = (counts[:, han] > 0) & (counts[:, latin] > 0)
        weighted[mixed, latin] = long_words[mixed]        # ties go to Han: it comes first in SCRIPTS
        top = weighted.argmax(axis=1)
        share = np.divide(weighted[np.arange(len(texts)), top], weighted.sum(axis=1), out=np.zeros(len(texts)),
                          where=total > 0)
        langs = ["und"] * len(texts)
        scores = np.zeros(len(texts), dtype=np.float32)
        ask: list[int] = []
        for i in range(len(texts)):
            candidates = self.script_langs.get(names[top[i]], []) if total[i] else []
            if len(candidates) == 1:
                langs[i], scores[i] = candidates[0], round(float(share[i]), 4)
            elif candidates:
                ask.append(i)
        if ask:
            answers = self.lingua.compute_language_confidence_values_in_parallel(
                [texts[i][:_LINGUA_CHARS] for i in ask])
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
