"""Issue 10: a run never writes over another run, and a damaged or edited run says what is wrong.

Families: run directories (existing, concurrent, uncreatable), resume from a
damaged newest checkpoint or torn logs or an edited recipe, a full disk
during a checkpoint, and a model folder with pickle weights only.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rewardkit import checkpoint, rundir
from rewardkit.cli import cli
from rewardkit.rundir import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
import tinymodels  # noqa: E402

TIMING = ("time/", "tokens_per_s")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tinymodels.build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def done_run(tiny, tmp_path_factory):
    """A finished 4-step run with checkpoints after steps 1 and 3."""
    out = tmp_path_factory.mktemp("done") / "run"
    result = _run(tiny, "--output-dir", str(out), "--set", "ppo.max_ppo_steps=4")
    assert result.exit_code == 0, result.output
    return out


def _run(recipe, *args):
    return CliRunner().invoke(cli, ["run", str(recipe), "--no-progress", *args])


def _resume(run_dir):
    return CliRunner().invoke(cli, ["run", "--resume", str(run_dir), "--no-progress"])


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _learning(records):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in records]


# -- run directories ------------------------------------------------------------------------------------------

def test_a_second_run_into_a_run_directory_is_refused_and_changes_nothing(tiny, done_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(done_run, copy)
    before = _digest(copy)
    result = _run(tiny, "--output-dir", str(copy), "--set", "ppo.max_ppo_steps=2")
    assert result.exit_code == 2, result.output
    assert f"{copy} already holds a run" in result.output and f"rewardkit run --resume {copy}" in result.output
    assert "Traceback" not in result.output
    assert _digest(copy) == before


@pytest.mark.parametrize("content", ["notes.txt", "metrics.jsonl", "checkpoints/"])
def test_a_directory_with_anything_in_it_is_not_written(tiny, tmp_path, content):
    target = tmp_path / "out"
    (target / content).parent.mkdir(parents=True, exist_ok=True)
    if not content.endswith("/"):
        (target / content).write_text("mine\n")
    else:
        (target / content).mkdir(exist_ok=True)
    before = _digest(target)
    result = _run(tiny, "--output-dir", str(target), "--set", "ppo.max_ppo_steps=1")
    assert result.exit_code == 2 and "already holds a run (or other files)" in result.output
    assert _digest(target) == before


def test_an_empty_existing_directory_is_used(tiny, tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    result = _run(tiny, "--output-dir", str(target), "--set", "ppo.max_ppo_steps=1")
    assert result.exit_code == 0, result.output
    assert (target / "final" / "adapter").is_dir()


def test_a_name_from_output_dir_gets_a_fresh_suffix(tiny, tmp_path):
    # the same name twice: what two runs started within one second get from "{recipe}-{time}"
    template = tmp_path / "runs" / "fixed"
    args = ("--set", f"output.dir={template}", "--set", "ppo.max_ppo_steps=1")
    first = _run(tiny, *args)
    assert first.exit_code == 0, first.output
    before = _digest(template)
    second = _run(tiny, *args)
    assert second.exit_code == 0, second.output
    assert f"{template} holds another run; this run writes {template}-2" in second.stderr
    assert _digest(template) == before and (template.parent / "fixed-2" / "final" / "adapter").is_dir()


def test_concurrent_claims_of_one_name_never_share_a_directory(tmp_path):
    name = tmp_path / "runs" / "same-second"
    got, errors = [], []

    def claim():
        try:
            got.append(rundir.claim(name, explicit=False))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 16 and len(set(got)) == 16
    # explicit names: exactly one claim wins, the others are refused
    wins, refusals = [], []
    target = tmp_path / "explicit"

    def claim_explicit():
        try:
            wins.append(rundir.claim(target, explicit=True))
        except rundir.RunDirError as exc:
            refusals.append(str(exc))

    threads = [threading.Thread(target=claim_explicit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(refusals) == 7


def test_a_run_directory_being_written_cannot_be_resumed_at_the_same_time(done_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(done_run, copy)
    with rundir.lock(copy):
        result = _resume(copy)
    assert result.exit_code == 2 and "is being written by another rewardkit process" in result.output


def _under_a_file(tmp_path):
    (tmp_path / "a-file").write_text("x")
    return tmp_path / "a-file" / "run"


def _read_only(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    return ro / "run"


@pytest.mark.parametrize("where", [_under_a_file, _read_only, lambda t: t / "a-file"], ids=["under-file",
                                                                                             "read-only", "is-file"])
def test_an_output_directory_that_cannot_be_created_is_refused_before_the_model_loads(tiny, tmp_path, where,
                                                                                      monkeypatch):
    target = where(tmp_path)
    if not target.parent.exists() or target.name == "a-file":
        (tmp_path / "a-file").write_text("x")

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("rewardkit.policy.build_policy", no_model)
    result = _run(tiny, "--output-dir", str(target))
    assert result.exit_code == 2, result.output
    # (click itself refuses an --output-dir that is a file, naming it)
    assert str(target) in result.output and "Traceback" not in result.output
    assert f"output directory {target}" in result.output or "is a file" in result.output
    # validate says the same for output.dir
    checked = CliRunner().invoke(cli, ["validate", str(tiny), "--set", f"output.dir={target}"])
    assert checked.exit_code == 2 and "output.dir" in checked.output and f"output directory {target}" in checked.output


def test_a_run_that_fails_to_start_leaves_no_directory_behind(tiny, tmp_path):
    target = tmp_path / "run"
    for _ in range(2):  # the second try gets the same error, not "already holds a run"
        result = _run(tiny, "--output-dir", str(target), "--set", "model.name=./no-such-model")
        assert result.exit_code == 2 and "no-such-model" in result.output, result.output
        assert not target.exists()


# -- resume ---------------------------------------------------------------------------------------------------

def _truncate(path):
    path.write_bytes(path.read_bytes()[:40])


DAMAGE = {
    "safetensors-truncated": lambda ck: _truncate(ck / "trainable.safetensors"),
    "safetensors-garbage": lambda ck: (ck / "trainable.safetensors").write_bytes(os.urandom(300)),
    "trainer-state-truncated": lambda ck: _truncate(ck / "trainer_state.pt"),
    "rng-missing": lambda ck: (ck / "rng_state.pt").unlink(),
    "marker-garbage": lambda ck: (ck / checkpoint.MARKER).write_text("{not json"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_newest_checkpoint_is_reported_and_the_newest_intact_one_used(done_run, tmp_path, kind):
    copy = tmp_path / "run"
    shutil.copytree(done_run, copy)
    newest = copy / "checkpoints" / "step-000003"
    DAMAGE[kind](newest)
    result = _resume(copy)
    assert result.exit_code == 0, result.output
    assert f"checkpoint {newest} is damaged" in result.stderr
    assert "resuming from" in result.stderr and "step-000001, the newest intact checkpoint" in result.stderr
    # steps 2 and 3 were run again from the step-1 state: the same numbers as the first time
    assert _learning(read_jsonl(copy / "metrics.jsonl")) == _learning(read_jsonl(done_run / "metrics.jsonl"))


def test_every_checkpoint_damaged_is_one_message(done_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(done_run, copy)
    for ck in (copy / "checkpoints").iterdir():
        _truncate(ck / "trainable.safetensors")
    result = _resume(copy)
    assert result.exit_code == 1 and "every checkpoint is damaged" in result.output
    assert "step-000001" in result.output and "step-000003" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("log", ["metrics.jsonl", "samples.jsonl"])
def test_a_torn_last_log_line_is_dropped_with_a_note(done_run, tmp_path, log):
    copy = tmp_path / "run"
    shutil.copytree(done_run, copy)
    shutil.rmtree(copy / "checkpoints" / "step-000003")  # resume after step 1, as if killed during step 3
    with open(copy / log, "a") as f:
        f.write('{"step": 4, "reward/tot')
    result = _resume(copy)
    assert result.exit_code == 0, result.output
    assert f"{copy / log}" in result.stderr and "dropped a torn last line" in result.stderr
    assert all(isinstance(r, dict) for r in read_jsonl(copy / log))
    assert [r["step"] for r in read_jsonl(copy / "metrics.jsonl")] == [0, 1, 2, 3]


def test_read_jsonl_drops_only_a_torn_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0}\n{"step": 1}\n{"st')
    notes = []
    assert read_jsonl(path, note=notes.append) == [{"step": 0}, {"step": 1}]
    assert notes and "line 3" in notes[0]
    path.write_bytes(b'{"step": 0}\n\xff\xfe garbage\n{"step": 2}\n')
    with pytest.raises(Exception, match=r"m\.jsonl, line 2: not a JSON record"):
        read_jsonl(path)


@pytest.mark.parametrize("edit, field, detail", [
    (("lora", "r", 8), "lora.r", "trained with rank 4, the recipe asks for 8"),
    (("lora", "target_modules", ["q", "k", "v"]), "lora.target_modules", "covers other layers"),
])
def test_a_recipe_edited_to_no_longer_fit_the_checkpoint_is_one_message(done_run, tmp_path, edit, field, detail):
    import yaml

    copy = tmp_path / "run"
    shutil.copytree(done_run, copy)
    recipe = yaml.safe_load((copy / "recipe.yaml").read_text())
    section, key, value = edit
    recipe[section][key] = value
    (copy / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = _resume(copy)
    assert result.exit_code == 1, result.output
    assert field in result.output and detail in result.output and str(copy / "recipe.yaml") in result.output
    assert "Traceback" not in result.output


def test_stale_temporary_checkpoint_folders_are_removed_at_resume(done_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(done_run, copy)
    stale = copy / "checkpoints" / ".step-000004.tmp-99999"
    stale.mkdir()
    (stale / "trainable.safetensors").write_bytes(b"half")
    result = _resume(copy)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and ".step-000004.tmp-99999" in result.stderr


# -- a full disk during a checkpoint --------------------------------------------------------------------------

class _Policy:
    def named_parameters(self):
        import torch

        return [("w", torch.nn.Parameter(torch.ones(2)))]


def _torch_full(*a, **k):
    raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                       "data/0: file write failed")


def _safetensors_full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("target, failure", [("torch.save", _torch_full),
                                             ("safetensors.torch.save_file", _safetensors_full)])
def test_a_full_disk_during_a_checkpoint_says_so_and_leaves_no_temporary_folder(tmp_path, monkeypatch, target,
                                                                                failure):
    import collections

    kept = checkpoint.save(tmp_path, 0, policy=_Policy(), state={}, rng_by_rank=[{}])
    monkeypatch.setattr(target, failure)
    Usage = collections.namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(100, 100, 0))
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.save(tmp_path, 1, policy=_Policy(), state={}, rng_by_rank=[{}])
    message = str(info.value)
    assert "the disk is full" in message and str(tmp_path / "checkpoints") in message
    assert f"the newest complete checkpoint, {kept}, is kept" in message
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000000"]


def test_a_full_disk_during_a_run_ends_it_with_one_message(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.save", _torch_full)
    out = tmp_path / "run"
    result = _run(tiny, "--output-dir", str(out), "--set", "ppo.max_ppo_steps=2", "--set",
                  "output.checkpoint_every=1")
    assert result.exit_code == 1 and "could not be written" in result.output and "Traceback" not in result.output
    assert [p.name for p in (out / "checkpoints").iterdir()] == []
    assert len(read_jsonl(out / "metrics.jsonl")) == 1  # the step's metrics are kept


# -- model folders --------------------------------------------------------------------------------------------

def test_a_model_folder_with_pickle_weights_only_says_how_to_convert(tiny, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    folder = tmp_path / "pickled"
    import torch

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny.parent / "t5")
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # what older checkpoints on the hub hold
    AutoTokenizer.from_pretrained(tiny.parent / "t5").save_pretrained(folder)
    assert not list(folder.glob("*.safetensors"))
    result = _run(tiny, "--output-dir", str(tmp_path / "run"), "--set", f"model.name={folder}")
    assert result.exit_code == 2, result.output
    assert "pytorch_model.bin" in result.output and "safetensors weights only" in result.output
    assert "save_pretrained" in result.output and "Traceback" not in result.output


# -- Ctrl-C ---------------------------------------------------------------------------------------------------

SLOW_REWARD = '''
import time, rewardkit

class Sleepy(rewardkit.Reward):
    """Takes a second per batch, so a signal lands in the middle of a step."""
    name = "sleepy"
    def score(self, batch):
        time.sleep(1.0)
        return [float(len(c)) / 10 for c in batch.completions]

@rewardkit.hookimpl
def register_rewards(register):
    register(Sleepy)
'''


def _start_slow_run(tiny, tmp_path):
    import subprocess

    (tmp_path / "sleepy_reward.py").write_text(SLOW_REWARD)
    text = tiny.read_text().replace("  - name: length\n    params: {target_words: 6}\n", "  - name: sleepy\n")
    text = text.replace("model: {name: t5}", f"model: {{name: {tiny.parent / 't5'}}}")
    text = text.replace("source: data.jsonl", f"source: {tiny.parent / 'data.jsonl'}")
    text = text.replace("max_ppo_steps: 6", "max_ppo_steps: 30")
    recipe = tmp_path / "sleepy.yaml"
    recipe.write_text(text.replace("checkpoint_every: 2", "checkpoint_every: 1") + "plugins: [sleepy_reward.py]\n")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rewardkit", "run", str(recipe), "--no-progress",
                             "--output-dir", str(out)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.time() + 120
    while len(read_jsonl(out / "metrics.jsonl", note=lambda m: None)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # inside the next step's reward
    return proc, lines, reader, out


def _wait_for(lines, text, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(text in line for line in lines):
            return proc.poll() is None  # True: said while the run was still going
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never printed; stderr: {''.join(lines)}")


def test_the_first_ctrl_c_says_the_run_stops_after_this_step(tiny, tmp_path):
    import signal

    proc, lines, reader, out = _start_slow_run(tiny, tmp_path)
    proc.send_signal(signal.SIGINT)
    assert _wait_for(lines, "Ctrl-C: stopping after this step", proc), "said only once the run had ended"
    assert proc.wait(timeout=120) == 130
    reader.join(timeout=10)
    text = "".join(lines)
    assert "(Ctrl-C again to abort now)" in text and f"Resume with: rewardkit run --resume {out}" in text
    stopped = read_jsonl(out / "metrics.jsonl")[-1]["step"]
    assert checkpoint.latest(out).name == f"step-{stopped:06d}"


def test_a_second_ctrl_c_aborts_with_exit_130_and_says_what_was_kept(tiny, tmp_path):
    import signal

    proc, lines, reader, out = _start_slow_run(tiny, tmp_path)
    proc.send_signal(signal.SIGINT)
    _wait_for(lines, "Ctrl-C: stopping after this step", proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    reader.join(timeout=10)
    text = "".join(lines)
    logged = read_jsonl(out / "metrics.jsonl")[-1]["step"]
    assert f"aborted during a step; kept: metrics.jsonl up to step {logged}" in text, text
    assert f"the newest checkpoint is {checkpoint.latest(out)}" in text and "Traceback" not in text
