"""CareLlama's own identity templates (real sample of data/self_cognition.json), converted with the
persona converter beside the built-in set and filled from build.persona."""

from __future__ import annotations

import json

from etl.convert.base import RecordContext, get_converter
from etl.fetch.mirror import MirrorFetcher
from etl.read.base import get_reader
from etl.rows import RowBuilder
from tests.helpers_convert import MIRROR, catalog_source, convert_source_files, turns


def _convert(persona: dict[str, str] | None):
    source = catalog_source("carellama_self_cognition")
    if persona is not None:
        source = source.model_copy(update={"options": {**source.options, "persona": persona}})
    converter = get_converter(source.format)
    fetched = MirrorFetcher(MIRROR).fetch(source)
    builder, rows, filtered = RowBuilder(source), [], []
    for item in get_reader(source.reader)(fetched.source_files(), dict(source.options)):
        ctx = RecordContext(source, item.file, item.location, "train")
        try:
            rows += [builder.build(row, "train") for row in converter.fn(item.value, ctx)]
        except Exception as exc:  # noqa: BLE001
            filtered.append(type(exc).__name__ + ":" + str(exc))
    return rows, filtered


def test_templates_filled_from_the_build_persona() -> None:
    rows, failures = _convert({"name": "MedBot", "author": "MedCorpus"})
    assert failures == [] and len(rows) == 14
    assert turns(rows[0]) == [("user", "你好"), ("assistant", "您好，我是 MedBot，一个由 MedCorpus 开发的 AI 助手，"
                                                            "很高兴认识您。请问我能为您做些什么？")]
    assert turns(rows[3])[1][1] == "您好，我是由 MedCorpus 发明的 MedBot。我可以为您提供多种多样的服务，比如翻译、写代码、闲聊、为您答疑解惑等。"
    text = json.dumps([turns(r) for r in rows], ensure_ascii=False)
    assert "<NAME>" not in text and "<AUTHOR>" not in text


def test_without_a_persona_every_template_is_filtered() -> None:
    result = convert_source_files("carellama_self_cognition")
    assert (result.read, result.rows, result.rejects) == (14, [], [])
    assert result.filtered == {"no_persona_configured": 14}
