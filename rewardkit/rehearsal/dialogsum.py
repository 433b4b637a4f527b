"""The ``knkarthick/dialogsum`` stand-in: the real columns and splits, the project's own dialogues.

Written twice, because ``datasets`` and ``huggingface_hub`` keep different caches:

- as the hub repository (``$HF_HOME/hub/datasets--knkarthick--dialogsum``:
  ``train.csv``, ``validation.csv``, ``test.csv``), what ``hf download
  --repo-type dataset knkarthick/dialogsum`` leaves;
- as the Arrow cache ``datasets`` writes the first time it loads the dataset
  online (``$HF_HOME/datasets/knkarthick___dialogsum/default/0.0.0/<commit>``).

Offline, ``datasets.load_dataset("knkarthick/dialogsum")`` never reads the hub
cache: with ``HF_HUB_OFFLINE=1`` it skips the hub and looks only for its own
Arrow cache (``CachedDatasetModuleFactory`` in ``datasets/load.py``). The
Arrow cache is built here by the same CSV builder an online load uses, with
the same ``repo_id``, so it lands where an online load would put it.
"""

from __future__ import annotations

import csv
from pathlib import Path

from rewardkit.assets.corpus import make_dialogues

DIALOGSUM = "knkarthick/dialogsum"
#: Rows per split, as in the real DialogSum.
SPLITS = {"train": 12460, "validation": 500, "test": 1500}
COLUMNS = ("id", "dialogue", "summary", "topic")


def write_csvs(out: Path, seed: int) -> dict[str, Path]:
    """One CSV per split with DialogSum's columns; returns ``{file name: path}``."""
    out.mkdir(parents=True, exist_ok=True)
    dialogues = make_dialogues(seed, sum(SPLITS.values()))
    files, start = {}, 0
    for split, n in SPLITS.items():
        path = out / f"{split}.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            for i, d in enumerate(dialogues[start:start + n]):
                writer.writerow((f"{split}_{i}", d.text, d.summary, d.scene))
        files[path.name] = path
        start += n
    return files


def write_arrow_cache(datasets_cache: Path, snapshot: Path, commit: str) -> Path:
    """Prepare the Arrow cache ``load_dataset(DIALOGSUM)`` finds offline; returns its folder."""
    from datasets.packaged_modules.csv.csv import Csv

    data_files = {split: [str(snapshot / f"{split}.csv")] for split in SPLITS}
    builder = Csv(cache_dir=str(datasets_cache), dataset_name=DIALOGSUM.split("/")[1], hash=commit,
                  config_id="default", data_files=data_files)
    # An online load passes repo_id with hf:// data files; ours are local
    # files, which the builder refuses under a repo_id, so set it afterwards:
    # it only names the cache folder (knkarthick___dialogsum).
    builder.repo_id = DIALOGSUM
    builder._cache_dir = builder._build_cache_dir()
    builder.download_and_prepare()
    return Path(builder.cache_dir)
