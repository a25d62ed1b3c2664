"""A small catalogue of generic-format sources over real fixtures, shared by the build tests."""

import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"

CATALOG = """
build: {shard_max_bytes: 256MB}
sources:
  - {id: shennong_tcm, name: ShenNong-TCM, host: hf, repo: michaelwzhu/ShenNong_TCM_Dataset, revision: 7356f4f,
     files: [ChatMed_TCM-v0.2.json], task: sft, format: query_response, license: apache-2.0, lang: zh}
  - {id: medicalgpt_sft_medical, name: MedicalGPT medical SFT, host: github, repo: shibing624/MedicalGPT,
     revision: 2f1008cfa49cbba69ff6f138c3b5e2fb0646bdc7, files: [data/sft/medical_sft_1K_format.jsonl],
     task: sft, format: sharegpt, license: Apache-2.0, lang: zh}
  - {id: chatdoctor_genmedgpt5k, name: GenMedGPT-5k, host: gdrive, file_id: 1nDTKZ3wZbZWTkFMBkxlamrzbNz0frugg,
     filename: GenMedGPT-5k.json, task: sft, format: alpaca, license: Apache-2.0, lang: en}
  - {id: medicalgpt_reward, name: MedicalGPT DPO, host: github, repo: shibing624/MedicalGPT,
     revision: 2f1008cfa49cbba69ff6f138c3b5e2fb0646bdc7, files: [data/reward/dpo_zh_500.jsonl],
     task: reward, format: preference, license: Apache-2.0, lang: zh}
  - {id: medicalgpt_pretrain, name: MedicalGPT pretrain, host: github, repo: shibing624/MedicalGPT,
     revision: 2f1008cfa49cbba69ff6f138c3b5e2fb0646bdc7, files: [data/pretrain/fever.txt],
     task: pretrain, format: text, reader: text, license: Apache-2.0, lang: zh}
  - {id: broken_lines, name: Broken, host: http, url: "https://example.org/broken.jsonl", task: sft,
     format: query_response, license: MIT}
"""


def make_mirror(root: Path) -> Path:
    mirror = root / "mirror"
    for name in ("shennong_tcm", "medicalgpt_sft_medical", "chatdoctor_genmedgpt5k", "medicalgpt_reward",
                 "medicalgpt_pretrain"):
        shutil.copytree(FIXTURES / name, mirror / name)
    broken = mirror / "broken_lines"
    broken.mkdir(parents=True)
    lines = ['{"query": "胃疼怎么办", "response": "少食多餐"}', '{"query": "头晕", "response": ',
             '{"query": "发烧", "response": "   "}', '["not", "an", "object"]', '{"query": "咳嗽", "response": "多喝水"}']
    (broken / "broken.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return mirror
