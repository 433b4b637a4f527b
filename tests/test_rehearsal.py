"""The seed's experiment, rehearsed offline: detox recipes against stand-ins found by their real hub ids.

The slow tests build the rehearsal cache once (about 30 s, 2.4 GB in a temp
dir), point ``HF_HOME`` at it with ``HF_HUB_OFFLINE=1`` and run the real
commands in subprocesses (huggingface_hub and datasets read those variables
when they are imported, so they must start fresh). Only ``ppo.batch_size``,
``ppo.mini_batch_size`` and ``ppo.max_ppo_steps`` are changed for ``run``;
``eval`` samples 2 held-out prompts.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rewardkit.rehearsal import dialogsum, hubcache

REPO = Path(__file__).resolve().parent.parent
SHRINK = ["--set", "ppo.batch_size=2", "--set", "ppo.mini_batch_size=2", "--set", "ppo.max_ppo_steps=1"]


# --------------------------------------------------------------------------- fast: the cache layout

def test_write_repo_uses_huggingface_hub_layout(tmp_path, monkeypatch):
    """Blobs named by git sha1 (sha256 for LFS files), refs/main, relative symlinks; hf_hub_download finds it."""
    import hashlib

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text("{}\n")
    (tmp_path / "src" / "model.safetensors").write_bytes(b"weights")
    files = {p.name: p for p in (tmp_path / "src").iterdir()}
    commit = hubcache.write_repo(tmp_path / "hub", "org/name", files)
    root = tmp_path / "hub" / "models--org--name"
    assert (root / "refs" / "main").read_text() == commit
    # git's blob id of "{}\n" and the sha256 of the LFS file, as the hub's ETags
    assert (root / "blobs" / hashlib.sha1(b"blob 3\0{}\n").hexdigest()).exists()
    assert (root / "blobs" / hashlib.sha256(b"weights").hexdigest()).exists()
    link = root / "snapshots" / commit / "config.json"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    # the same files give the same commit
    again = hubcache.write_repo(tmp_path / "hub2", "org/name", files)
    assert again == commit
    out = subprocess.run([sys.executable, "-c", "from huggingface_hub import hf_hub_download as d; "
                          "print(d('org/name', 'model.safetensors'))"],
                         env={**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).read_bytes() == b"weights"


def test_dialogsum_csvs_have_the_real_columns_and_splits(tmp_path):
    """id, dialogue, summary, topic; train/validation/test with DialogSum's row counts; seeded."""
    import csv

    files = dialogsum.write_csvs(tmp_path / "a", seed=3)
    assert sorted(files) == ["test.csv", "train.csv", "validation.csv"]
    for split, n in dialogsum.SPLITS.items():
        with open(files[f"{split}.csv"], encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == n and tuple(rows[0]) == dialogsum.COLUMNS
        assert rows[0]["id"] == f"{split}_0" and rows[0]["dialogue"].startswith("#Person1#: ")
    again = dialogsum.write_csvs(tmp_path / "b", seed=3)
    assert all(files[k].read_bytes() == again[k].read_bytes() for k in files)


def test_hub_dataset_downloaded_with_hf_download_loads_offline(tmp_path):
    """Files in the hub cache only (what `hf download --repo-type dataset` leaves) load by id offline.

    datasets itself reads only its Arrow cache offline; rewardkit.data falls
    back to the cached snapshot folder.
    """
    (tmp_path / "src").mkdir()
    rows = "id,dialogue,summary,topic\n" + "".join(f"t{i},#Person1#: {'x' * 300},s{i},t\n" for i in range(5))
    (tmp_path / "src" / "train.csv").write_text(rows)
    hubcache.write_repo(tmp_path / "hub", "someone/dialogs", {"train.csv": tmp_path / "src" / "train.csv"},
                        repo_type="dataset")
    code = ("from rewardkit.recipe.schema import DataSection\n"
            "from rewardkit.data import load_rows\n"
            "d = load_rows(DataSection(source='someone/dialogs', text_field='dialogue'))\n"
            "print(len(d), d.column_names)\n")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_DATASETS_CACHE": str(tmp_path / "ds"),
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "5 ['id', 'dialogue', 'summary', 'topic']"


# --------------------------------------------------------------------------- slow: the real commands

@pytest.fixture(scope="session")
def rehearsal_home(tmp_path_factory):
    """An HF_HOME holding the rehearsal cache, built once per session."""
    home = tmp_path_factory.mktemp("hf-home")
    subprocess.run([sys.executable, "-m", "rewardkit.rehearsal", "build", "--out", str(home)], check=True,
                   capture_output=True, text=True, cwd=REPO)
    return home


@pytest.fixture
def offline(rehearsal_home, monkeypatch):
    """The environment of a user who downloaded everything once and is now offline."""
    monkeypatch.setenv("HF_HOME", str(rehearsal_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    return rehearsal_home


def _rewardkit(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rewardkit", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_stand_ins_load_by_their_real_ids(offline):
    """Real ids, real vocabulary sizes and labels, through from_pretrained and load_dataset, offline."""
    code = (
        "import json, datasets\n"
        "from transformers import AutoConfig, AutoTokenizer\n"
        "out = {}\n"
        "for rid in ['google/flan-t5-base', 'facebook/roberta-hate-speech-dynabench-r4-target', 'unitary/toxic-bert']:\n"
        "    c = AutoConfig.from_pretrained(rid)\n"
        "    out[rid] = [len(AutoTokenizer.from_pretrained(rid)), c.vocab_size, c.id2label]\n"
        "d = datasets.load_dataset('knkarthick/dialogsum')\n"
        "out['dialogsum'] = {k: [v.num_rows, v.column_names] for k, v in d.items()}\n"
        "print(json.dumps(out))\n")
    got = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    cwd=REPO).stdout)
    assert got["google/flan-t5-base"][:2] == [32100, 32128]
    assert got["facebook/roberta-hate-speech-dynabench-r4-target"] == [50265, 50265, {"0": "nothate", "1": "hate"}]
    assert got["unitary/toxic-bert"][:2] == [30522, 30522]
    assert list(got["unitary/toxic-bert"][2].values()) == ["toxic", "severe_toxic", "obscene", "threat", "insult",
                                                           "identity_hate"]
    columns = ["id", "dialogue", "summary", "topic"]
    assert got["dialogsum"] == {"train": [12460, columns], "validation": [500, columns], "test": [1500, columns]}


def _check_run(run: Path) -> dict:
    """One logged step, finite, with completions of 100..400 drawn tokens; returns the metrics."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    # random weights almost never sample </s>, so each completion runs to its drawn budget
    assert 100 <= metrics["response_length_mean"] <= 400
    env = json.loads((run / "env.json").read_text())
    # 200 < len(dialogue) <= 1000 keeps nearly all of the 12,460 training dialogues
    assert 12000 < env["train_prompts"] + env["test_prompts"] < 12460
    assert (run / "final" / "adapter" / "adapter_model.safetensors").exists()
    return metrics


def _check_eval(run: Path) -> None:
    """eval ran both independent judges: profanity-check and toxic-bert's 'toxic' label."""
    result = json.loads((run / "eval.json").read_text())
    text = json.dumps(result)
    assert "P(profane)" in text and "P(toxic)" in text and "unitary/toxic-bert" in text
    judges = result.get("judges")
    infos = judges if isinstance(judges, list) else list(judges.values()) if isinstance(judges, dict) else []
    assert infos and all(j.get("independent", True) for j in infos if isinstance(j, dict))
    assert (run / "report.md").exists()


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["detox.yaml", "detox-composed.yaml"])
def test_detox_recipe_runs_one_step_and_evaluates(offline, tmp_path, recipe):
    """validate, run one step (batch 2), eval on 2 held-out prompts: the recipe otherwise unchanged."""
    path = str(REPO / "recipes" / recipe)
    assert "valid" in _rewardkit("validate", path).stdout
    run = tmp_path / "run"
    _rewardkit("run", path, *SHRINK, "--output-dir", str(run), "--no-progress")
    _check_run(run)
    _rewardkit("eval", str(run), "-n", "2", "--batch-size", "2", "--no-progress")
    _check_eval(run)
