"""Build the rehearsal cache: stand-ins for the seed's models and dataset, under their real ids.

    python -m rewardkit.rehearsal build --out DIR [--seed N] [--threads N]

``DIR`` becomes a Hugging Face home: ``DIR/hub`` in huggingface_hub's cache
layout (``models--google--flan-t5-base/...``) and ``DIR/datasets`` in the
datasets library's. With ``HF_HOME=DIR HF_HUB_OFFLINE=1`` these load exactly
as they would for a user who had downloaded them once:

- ``google/flan-t5-base``, ``facebook/roberta-hate-speech-dynabench-r4-target``,
  ``unitary/toxic-bert``: real configs and vocabulary sizes, random weights
  (see :mod:`rewardkit.rehearsal.models`, :mod:`rewardkit.rehearsal.vocabs`);
- ``knkarthick/dialogsum``: real columns and split sizes, the project's own
  dialogues (:mod:`rewardkit.rehearsal.dialogsum`).

Everything is drawn from ``--seed``; ``DIR/manifest.json`` lists the sha256 of
every file and each repo's commit. About a minute on 2 cores, 2.4 GB on disk.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

from rewardkit.assets.build import sub_seed
from rewardkit.assets.corpus import PROMPT_TEMPLATE
from rewardkit.rehearsal import dialogsum, hubcache, models, vocabs


def _log(message: str) -> None:
    print(message, flush=True)


def _tokenizer_texts(csv_path: Path) -> list[str]:
    """The training split's turns and summaries (plus the prompt template), as every tokenizer's text."""
    import csv

    texts = []
    with open(csv_path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            texts.extend(row["dialogue"].split("\n"))
            texts.append(row["summary"])
    return texts + [PROMPT_TEMPLATE] * 100


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _publish(hub: Path, repo_id: str, folder: Path, repo_type: str = "model") -> dict:
    files = {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}
    sums = {name: _sha256(p) for name, p in files.items()}
    commit = hubcache.write_repo(hub, repo_id, files, repo_type=repo_type, move=True)
    return {"commit": commit, "files": sums}


def build(out: Path, seed: int = 0, *, threads: int = 1, log=_log) -> dict:
    """Write the whole cache into ``out`` (an ``HF_HOME``) and return the manifest (also saved there)."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    out = Path(out)
    hub, datasets_cache = out / "hub", out / "datasets"
    start = time.perf_counter()
    manifest: dict = {"seed": seed, "threads": threads, "command": "python -m rewardkit.rehearsal build",
                      "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                      "repos": {}}
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        tmp = Path(tmp)
        files = dialogsum.write_csvs(tmp / "dialogsum", sub_seed(seed, "dialogsum"))
        texts = _tokenizer_texts(files["train.csv"])
        entry = _publish(hub, dialogsum.DIALOGSUM, tmp / "dialogsum", "dataset")
        snapshot = hub / hubcache.repo_folder(dialogsum.DIALOGSUM, "dataset") / "snapshots" / entry["commit"]
        entry["arrow_cache"] = str(dialogsum.write_arrow_cache(datasets_cache, snapshot, entry["commit"])
                                   .relative_to(out))
        entry["rows"] = dict(dialogsum.SPLITS)
        manifest["repos"][dialogsum.DIALOGSUM] = entry
        log(f"  {dialogsum.DIALOGSUM}: {sum(dialogsum.SPLITS.values())} rows ({time.perf_counter() - start:.0f}s)")

        plan = [
            (models.FLAN_T5_BASE, vocabs.train_t5, lambda d: models.build_t5(d, sub_seed(seed, "t5"))),
            (models.ROBERTA_HATE, vocabs.train_roberta,
             lambda d: models.build_classifier(models.ROBERTA_CONFIG, d, sub_seed(seed, "roberta"))),
            (models.TOXIC_BERT, vocabs.train_bert,
             lambda d: models.build_classifier(models.TOXIC_BERT_CONFIG, d, sub_seed(seed, "toxic-bert"))),
        ]
        for repo_id, train_tokenizer, build_model in plan:
            folder = tmp / repo_id.replace("/", "--")
            tokenizer, tok_info = train_tokenizer(texts)
            info = build_model(folder)
            tokenizer.save_pretrained(folder)
            entry = _publish(hub, repo_id, folder)
            manifest["repos"][repo_id] = {**info, "tokenizer": tok_info, **entry}
            log(f"  {repo_id}: {info['params'] / 1e6:.1f}M params, tokenizer {tok_info['size']} "
                f"({time.perf_counter() - start:.0f}s)")
    manifest["seconds"] = round(time.perf_counter() - start, 1)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
