"""A judge whose optional package is missing is skipped with one warning; the evaluation goes on.

Nothing is uninstalled: ``sys.modules['profanity_check'] = None`` makes the
import fail exactly as it does where alt-profanity-check is not installed
(a plain ``pip install rewardkit``, without the ``[test]`` extra).
"""

import json
import sys

import pytest
from click.testing import CliRunner

import tinymodels
from rewardkit.cli import cli
from rewardkit.evaluate.judges import PROFANITY_CHECK, JudgeUnavailable, RewardJudge, make_judge
from rewardkit.evaluate.pipeline import load_judges
from rewardkit.plugins import load_registry
from rewardkit.recipe.schema import RewardSpec

INSTALL = "pip install alt-profanity-check"


@pytest.fixture
def no_profanity_check(monkeypatch):
    """alt-profanity-check as if it were not installed (restored after the test)."""
    for name in [m for m in sys.modules if m == "profanity_check" or m.startswith("profanity_check.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "profanity_check", None)


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_missing_package_is_judge_unavailable_naming_judge_and_pip_command(no_profanity_check, registry):
    judge = make_judge(PROFANITY_CHECK, registry=registry)
    with pytest.raises(JudgeUnavailable) as info:
        judge.load()
    assert str(info.value) == (f"judge 'profanity-check' needs the alt-profanity-check package, which is not "
                               f"installed: {INSTALL}")
    assert (info.value.spec, info.value.package, info.value.install) == ("profanity-check", "alt-profanity-check",
                                                                         INSTALL)


def test_a_dependency_of_the_package_missing_says_what_failed(monkeypatch, tmp_path, registry):
    # the package present but broken (e.g. installed without scikit-learn): the import error is in the message
    fake = tmp_path / "profanity_check"
    fake.mkdir()
    (fake / "__init__.py").write_text("import sklearn_not_installed_here\n")
    for name in [m for m in sys.modules if m == "profanity_check" or m.startswith("profanity_check.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(JudgeUnavailable, match=r"not installed \(importing it failed: No module named "
                                               r"'sklearn_not_installed_here'\): pip install alt-profanity-check"):
        make_judge(PROFANITY_CHECK, registry=registry).load()


def test_load_judges_skips_it_with_one_warning_and_keeps_the_others(no_profanity_check, registry):
    specs = [RewardSpec(name="length", params={"target_words": 3})]
    judges = [make_judge(PROFANITY_CHECK, registry=registry), make_judge("length", registry=registry, rewards=specs)]
    messages = []
    ready, skipped = load_judges(judges, warn=messages.append)
    assert [type(j) for j in ready] == [RewardJudge]
    assert len(messages) == 1
    assert "judge 'profanity-check'" in messages[0] and INSTALL in messages[0] and "Skipping this judge" in messages[0]
    assert [(s["key"], s["spec"], s["install"]) for s in skipped] == [("profanity", "profanity-check", INSTALL)]
    # without a callback the warning is a Python warning
    with pytest.warns(RuntimeWarning, match="judge 'profanity-check' needs the alt-profanity-check package"):
        load_judges([make_judge(PROFANITY_CHECK, registry=registry)])


def test_other_judge_failures_still_stop_the_evaluation(registry, tmp_path):
    # a missing package is skipped; a classifier that does not exist is an error the user asked for
    from rewardkit.errors import RewardkitError

    judge = make_judge(str(tmp_path / "no-such-classifier"), registry=registry)
    with pytest.raises(RewardkitError) as info:
        load_judges([judge], warn=lambda m: None)
    assert not isinstance(info.value, JudgeUnavailable)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-step run of the tiny random T5 (seconds): something to evaluate."""
    recipe = tinymodels.build(tmp_path_factory.mktemp("tiny"))
    out = recipe.parent / "run"
    result = CliRunner().invoke(cli, ["run", str(recipe), "--output-dir", str(out), "--no-progress",
                                      "--set", "ppo.max_ppo_steps=1"])
    assert result.exit_code == 0, result.output
    return out


def _eval(run, out, *judges, json_out=False):
    args = ["eval", str(run), "--out", str(out), "--num-samples", "4", "--no-progress", "--device", "cpu"]
    args += [a for j in judges for a in ("--judge", j)] + (["--json"] if json_out else [])
    return CliRunner().invoke(cli, args)


def test_eval_completes_without_the_package(no_profanity_check, tiny_run, tmp_path):
    result = _eval(tiny_run, tmp_path, PROFANITY_CHECK, "length", json_out=True)
    assert result.exit_code == 0, result.output
    # one warning, on stderr (stdout stays the JSON summary)
    assert result.stderr.count("judge 'profanity-check' needs the alt-profanity-check package") == 1
    assert INSTALL in result.stderr
    summary = json.loads(result.stdout)
    assert list(summary["judges"]) == ["reward-length"]          # the other judge ran
    assert [s["key"] for s in summary["skipped_judges"]] == ["profanity"]
    assert set(summary["rewards"]) == {"total", "length"} and "words" in summary["quality"]
    # the judge that ran is the recipe's own reward: nothing independent checked this evaluation
    assert summary["headline"]["independent_judge"] is False
    full = json.loads((tmp_path / "eval.json").read_text())
    assert full["skipped_judges"][0]["install"] == INSTALL
    assert all(set(s["after"]["judges"]) == {"reward-length"} for s in full["samples"])


def test_eval_with_every_judge_skipped_still_reports_rewards_and_quality(no_profanity_check, tiny_run, tmp_path):
    result = _eval(tiny_run, tmp_path, PROFANITY_CHECK)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning: judge 'profanity-check'") == 1
    out = result.stdout
    assert "P(profane)" in out and f"skipped: needs alt-profanity-check ({INSTALL})" in out
    assert "no judge ran (every one was skipped): no independent judge checked this evaluation" in out
    assert "reward model (higher is better):" in out and "quality:" in out
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["judges"] == {} and data["headline"]["independent_judge"] is False
    assert "judge" not in data["headline"] and data["headline"]["reward"]["before"] is not None
    for name in ("report.md", "report.html", "distributions.png"):
        assert (tmp_path / name).is_file(), name
    # the report says which judge did not run and how to get it
    report = (tmp_path / "report.md").read_text()
    assert "was not run" in report and INSTALL in report
