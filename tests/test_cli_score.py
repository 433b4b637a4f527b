"""``rewardkit score``: one reward on given texts, with params, references and sample files."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fake_rewards import FakeEntryPoint, Miscounting, installed, make_plugin, standard_plugins
from rewardkit.cli import cli


@pytest.fixture
def fakes():
    with installed(*standard_plugins()):
        yield


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_table(fakes):
    result = invoke("score", "shouting", "HELLO there", "QUIET", "quiet")
    assert result.exit_code == 0, result.output
    # "HELLO there": 5 of its 10 letters are capitals -> 0.5; all -> 1.0; none -> 0.0.
    assert result.stdout == ("     SCORE  TEXT\n"
                             "    0.5000  HELLO there\n"
                             "    1.0000  QUIET\n"
                             "    0.0000  quiet\n")


def test_long_and_multiline_texts_are_shown_on_one_line(fakes):
    text = "line one\nline two " + "x" * 100
    result = invoke("score", "shouting", text)
    shown = result.stdout.splitlines()[1]
    assert shown == "    0.0000  line one line two " + "x" * 53 + "…"  # cut to 72 characters in all


def test_params(fakes):
    result = invoke("score", "shouting", "HELLO there", "quiet", "--param", "mode=binary", "--param", "threshold=0.4")
    # binary: 1.0 when the share of capitals (0.5, 0.0) reaches the threshold 0.4.
    assert result.stdout.splitlines()[1:] == ["    1.0000  HELLO there", "    0.0000  quiet"]


def test_json(fakes):
    result = invoke("score", "overlap", "the cat sat", "--reference", "a cat sat down", "--prompt", "Describe:",
                    "--json")
    assert result.exit_code == 0, result.output
    # "cat" and "sat" of the three words appear in the reference: 2/3.
    assert json.loads(result.stdout) == {
        "reward": "overlap", "plugin": "rewardkit-shouting", "params": {"lowercase": True},
        "scores": [{"score": 2 / 3, "completion": "the cat sat", "prompt": "Describe:",
                    "reference": "a cat sat down"}],
    }


def test_bad_params_name_the_reward_and_the_param(fakes):
    result = invoke("score", "shouting", "x", "--param", "threshold=2")
    assert result.exit_code == 2
    assert result.stderr.endswith("Error: Invalid value for '--param': reward 'shouting', param 'threshold': "
                                  "Input should be less than or equal to 1 (got 2)\n")
    result = invoke("score", "shouting", "x", "--param", "treshold=0.1", "--param", "mode=loud")
    assert result.exit_code == 2
    # Every problem, in pydantic's order: declared fields first, unknown keys after.
    assert result.stderr.endswith(
        "Error: Invalid value for '--param': \n"
        "  reward 'shouting', param 'mode': Input should be 'share' or 'binary' (got 'loud')\n"
        "  reward 'shouting', param 'treshold': unknown key 'treshold'; did you mean 'threshold'?\n")
    result = invoke("score", "shouting", "x", "--param", "threshold")
    assert result.exit_code == 2
    assert "--param threshold: expected KEY=VALUE" in result.stderr
    assert "Traceback" not in result.output


def test_reward_that_needs_references(fakes):
    result = invoke("score", "overlap", "the cat sat")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: reward 'overlap' compares each text with a reference: give --reference once per TEXT, "
        "or --samples FILE.jsonl with a \"reference\" field on every line\n")
    result = invoke("score", "overlap", "a", "b", "--reference", "a")
    assert result.exit_code == 2
    assert "got 1 --reference for 2 TEXT arguments" in result.stderr


def test_samples_file(fakes, tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"completion": "the cat sat", "reference": "the cat", "id": 7}\n'
                       "\n"
                       '{"completion": "a dog", "reference": "A DOG", "prompt": "p"}\n')
    result = invoke("score", "overlap", "--samples", str(samples), "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)["scores"]
    # "the", "cat" of three words -> 2/3; lowercased "a dog" is all in "a dog" -> 1.0. Blank lines are skipped.
    assert [(s["score"], s["prompt"], s["reference"]) for s in scores] == [(2 / 3, "", "the cat"), (1.0, "p", "A DOG")]


def test_bad_samples_file(fakes, tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"completion": "ok"}\n[1, 2]\n{"prompt": "p"}\n{"completion": 3}\nnot json\n')
    result = invoke("score", "shouting", "--samples", str(samples))
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: Invalid value for '--samples': \n"
        f"  {samples}:2: expected a JSON object with a \"completion\" field\n"
        f"  {samples}:3: missing \"completion\"\n"
        f"  {samples}:4: \"completion\" must be a string\n"
        f"  {samples}:5: not valid JSON: Expecting value\n")
    samples.write_text('{"completion": "a", "reference": "a"}\n{"completion": "b"}\n')
    result = invoke("score", "overlap", "--samples", str(samples))
    assert result.exit_code == 2
    assert f"{samples}:2: no \"reference\", but other lines have one" in result.stderr


def test_nothing_or_too_much_to_score(fakes, tmp_path):
    result = invoke("score", "shouting")
    assert result.exit_code == 2
    assert "nothing to score: give one or more TEXT arguments or --samples FILE.jsonl" in result.stderr
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"completion": "a"}\n')
    result = invoke("score", "shouting", "x", "--samples", str(samples))
    assert result.exit_code == 2
    assert "give TEXT arguments or --samples, not both" in result.stderr


def test_unknown_reward(fakes):
    result = invoke("score", "shoutng", "x")
    assert result.exit_code == 2
    assert result.stderr == "Error: unknown reward 'shoutng'; did you mean 'shouting'?\n"


def test_reward_returning_too_few_scores_is_named():
    with installed(FakeEntryPoint("miscounting", make_plugin("rk_mis", Miscounting))):
        result = invoke("score", "miscounting", "a", "b")
    assert result.exit_code == 1
    # Without a distribution, the plugin is named by its entry point's module.
    assert result.stderr == "Error: reward 'miscounting' (plugin fake_miscounting): returned 1 scores for 2 samples\n"


def test_builtin_length_reward():
    # length, linear, target 3 words: 3 words -> 0; 5 words -> -(5 - 3) = -2.
    result = invoke("score", "length", "a short answer", "one two three four five", "--param", "target_words=3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == ["    0.0000  a short answer", "   -2.0000  one two three four five"]


def test_rewardkit_score_shows_none(tmp_path):
    plugin = tmp_path / "picky.py"
    plugin.write_text("import rewardkit\n\n\nclass Picky(rewardkit.Reward):\n    name = 'picky'\n\n"
                      "    def score(self, batch):\n        return [None if not c else 1.0 for c in batch.completions]\n\n\n"
                      "@rewardkit.hookimpl\ndef register_rewards(register):\n    register(Picky)\n")
    result = CliRunner().invoke(cli, ["score", "picky", "hi", "", "--plugin", str(plugin)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == ["    1.0000  hi", "      None  "]
