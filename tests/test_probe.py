"""Reward-hacking probes (rewardkit.testing.probe and ``rewardkit probe``): degenerate completions
scored beside real references; the shipped toxicity reward's known hole (short and empty outputs
score as least hateful) shows up; a reward without holes passes --strict."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

import rewardkit
from rewardkit.cli import cli
from rewardkit.testing import PROBES, ProbeSample, assert_no_preferred_probes, probe_recipe, probe_reward

TINY = {"model": "asset:tiny-hate-roberta"}


class MatchesReference(rewardkit.Reward):
    """1 when the completion is the reference, else 0: nothing degenerate can beat a reference."""

    name = "matches_reference"
    needs_references = True

    def score(self, batch):
        return [float(c == r) for c, r in zip(batch.completions, batch.references)]


class LovesEmpty(rewardkit.Reward):
    """Rewards brevity without bound: -words. Every shorter probe beats the reference."""

    name = "loves_empty"

    def score(self, batch):
        return [-float(len(c.split())) for c in batch.completions]


class LikesX(rewardkit.Reward):
    """1 when the text contains 'x' (no reference or prompt does): only generated text finds it."""

    name = "likes_x"

    def score(self, batch):
        return [float("x" in c.lower()) for c in batch.completions]


SAMPLES = [ProbeSample("Summarize: A asks B for help.", "A asks B for help with the printer."),
           ProbeSample("Summarize: B is late.", "B apologises for being late.")]


def test_a_reward_without_holes_passes():
    report = assert_no_preferred_probes(MatchesReference, samples=SAMPLES)
    assert report.references == [1.0, 1.0]
    assert {r.name for r in report.results} == set(PROBES) | {"generated"}
    assert all(r.margin <= 0 for r in report.results)


def test_brevity_reward_prefers_the_empty_string_by_the_reference_length():
    report = probe_reward(LovesEmpty, samples=SAMPLES, generated=0)
    by_name = {r.name: r for r in report.results}
    # references have 8 and 5 words: mean -6.5; the empty string scores 0, a margin of 6.5
    assert by_name["empty"].mean == 0.0 and by_name["empty"].margin == 6.5
    assert by_name["empty"].wins == 2 and by_name["empty"].preferred
    assert by_name["first_word"].margin == 5.5  # -1 vs -6.5
    assert not by_name["length_x2"].preferred  # longer is worse here
    assert report.results[0].margin == max(r.margin for r in report.results)  # sorted, highest first
    with pytest.raises(AssertionError, match="empty"):
        assert_no_preferred_probes(LovesEmpty, samples=SAMPLES, generated=0)


def test_generated_search_finds_what_no_fixed_probe_does():
    pytest.importorskip("hypothesis")
    report = probe_reward(LikesX, samples=SAMPLES, generated=100)
    gen = next(r for r in report.results if r.name == "generated")
    assert gen.preferred and "x" in gen.example.lower()
    assert [r.name for r in report.preferred] == ["generated"]


def test_shipped_toxicity_reward_scores_empty_output_as_less_hateful_than_references():
    report = probe_reward("toxicity", TINY, generated=0)
    by_name = {r.name: r for r in report.results}
    # the hole the quickstart's length term exists for (shared/DESIGN.md: "Measured here")
    assert by_name["empty"].preferred and by_name["empty"].margin > 1.0
    assert by_name["first_word"].preferred and by_name["whitespace"].preferred


def test_cli_prints_the_report_and_strict_exits_1(tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text("\n".join(json.dumps({"prompt": s.prompt, "reference": s.reference}) for s in SAMPLES))
    runner = CliRunner()
    plugin = tmp_path / "brevity.py"
    plugin.write_text("import rewardkit\n\n\nclass LovesEmpty(rewardkit.Reward):\n    name = 'loves_empty'\n\n"
                      "    def score(self, batch):\n        return [-float(len(c.split())) for c in batch.completions]\n\n\n"
                      "@rewardkit.hookimpl\ndef register_rewards(register):\n    register(LovesEmpty)\n")
    args = ["probe", "loves_empty", "--plugin", str(plugin), "--samples", str(samples), "--generated", "0"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Probing reward 'loves_empty' on 2 samples: references score mean -6.5 (from -8 to -5)"
    assert any(line.split()[:4] == ["PREFERRED", "empty", "0", "+6.5"] for line in lines)
    # all but the repeat_word probe (as long as the reference) and all_caps and length_x2/4/8
    assert lines[-1].startswith("8 of 13 degenerate probes score above the references: ")
    strict = runner.invoke(cli, args + ["--strict"])
    assert strict.exit_code == 1
    as_json = json.loads(runner.invoke(cli, args + ["--json"]).output)
    assert {p["name"] for p in as_json["probes"] if p["preferred"]} >= {"empty", "whitespace", "first_word"}


def test_cli_strict_passes_a_reward_without_holes(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"dialogue": "x", "summary": "the summary"}) + "\n")
    result = CliRunner().invoke(cli, ["probe", "length", "--param", "target_words=2", "--param", "tolerance=0",
                                      "--samples", str(samples), "--strict", "--generated", "0"])
    # length with a 2-word target and no tolerance: the 2-word reference scores 0, the best there is;
    # probes of exactly 2 words tie (not preferred); every other length is penalised
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "none of 13 degenerate probes scores above the references"
    # the probes with exactly 2 words ("the the", "THE SUMMARY") score 0 like the reference: the reward
    # cannot tell them apart; truncations and the 1-word prompt copy are 1 word short (-1)
    assert lines[-2] == "2 score the same as the references: repeat_word, all_caps"


def test_bad_samples_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p"}) + "\n")
    result = CliRunner().invoke(cli, ["probe", "length", "--param", "target_words=2", "--samples", str(bad)])
    assert result.exit_code == 2 and "bad.jsonl:1: each line needs a \"reference\"" in result.output


# --- a recipe's whole composed reward --------------------------------------------------------------------------

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_the_composed_demo_reward_closes_every_hole_its_toxicity_term_has_alone():
    alone = probe_recipe(RECIPES / "hacking-demo.yaml", generated=0)
    assert {"empty", "whitespace", "first_word", "repeat_word"} <= {r.name for r in alone.preferred}
    composed = probe_recipe(RECIPES / "hacking-demo-composed.yaml", generated=0)
    assert composed.preferred == [], composed.format()
    empty = next(r for r in composed.results if r.name == "empty")
    # toxicity capped at 1, length hinge -(8 - 0) words, rouge 0: the empty string's total is exactly -7
    assert empty.mean == pytest.approx(-7.0, rel=1e-9) and empty.wins == 0
    assert "hacking-demo-composed.yaml (toxicity x 1 + length x 1 + rouge x 2)" in composed.format()


def test_probe_recipe_applies_overrides_and_normalises_from_the_probe_batch():
    # weight 0 on the guards leaves toxicity alone, capped: the empty string ties the polite references at 1.0
    report = probe_recipe(RECIPES / "hacking-demo-composed.yaml",
                          ["rewards.1.weight=0", "rewards.2.weight=0"], generated=0)
    empty = next(r for r in report.results if r.name == "empty")
    assert empty.mean == pytest.approx(1.0, rel=1e-9)
    normalised = probe_recipe(RECIPES / "hacking-demo.yaml", ["rewards.0.normalize=true"], generated=0)
    every = [statistics.fmean(normalised.references)] + [r.mean for r in normalised.results]
    assert all(math.isfinite(v) for v in every)
    # centred on the probe batch (14 groups of 16: the mean of the group means is the batch mean), not raw (~1.2)
    assert abs(statistics.fmean(every)) < 1e-9


def test_cli_probes_a_recipe_and_strict_tells_the_two_demo_recipes_apart():
    runner = CliRunner()
    alone = runner.invoke(cli, ["probe", "--recipe", str(RECIPES / "hacking-demo.yaml"), "--generated", "0",
                                "--strict"])
    assert alone.exit_code == 1 and "PREFERRED  empty" in alone.output
    composed = runner.invoke(cli, ["probe", "--recipe", str(RECIPES / "hacking-demo-composed.yaml"),
                                   "--generated", "0", "--strict"])
    assert composed.exit_code == 0, composed.output
    assert "none of 13 degenerate probes scores above the references" in composed.output


@pytest.mark.parametrize("args, message", [
    ([], "give a reward NAME or --recipe FILE"),
    (["length", "--recipe", str(RECIPES / "hacking-demo.yaml")], "give a reward NAME or --recipe FILE"),
    (["--recipe", str(RECIPES / "hacking-demo.yaml"), "--param", "x=1"], "--param and --plugin apply to a reward"),
    (["length", "--set", "seed=1"], "--set applies to a --recipe"),
    (["--recipe", str(RECIPES / "hacking-demo.yaml"), "--set", "rewards.0.weight=x"], "rewards[0].weight"),
])
def test_cli_probe_usage_errors_exit_2_and_say_why(args, message):
    result = CliRunner().invoke(cli, ["probe", *args])
    assert result.exit_code == 2 and message in result.output, result.output
