"""``rewardkit check-plugin``: one line per contract check, exit 1 on a failure, 2 on a user error."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.cli.check_plugin import parse_param

PLUGIN = '''
import rewardkit

__version__ = "0.3"


class Words(rewardkit.Reward):
    """Number of words times a scale."""

    name = "words"

    class Params(rewardkit.Params):
        scale: float = 1.0

    def score(self, batch):
        return [self.params.scale * len(c.split()) for c in batch.completions]


class Caps(rewardkit.Reward):
    """Share of capital letters (crashes on a completion without letters)."""

    name = "caps"

    def score(self, batch):
        out = []
        for c in batch.completions:
            letters = [ch for ch in c if ch.isalpha()]
            out.append(sum(ch.isupper() for ch in letters) / len(letters))
        return out


@rewardkit.hookimpl
def register_rewards(register):
    register(Words)
    register(Caps)
'''


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "words_plugin.py"
    path.write_text(textwrap.dedent(PLUGIN))
    return str(path)


def invoke(*args):
    return CliRunner().invoke(cli, ["check-plugin", *args])


def test_a_good_reward_passes_every_check(plugin_file):
    result = invoke("words", "--plugin", plugin_file, "--param", "scale=2")
    assert result.exit_code == 0, result.output
    # Scores are 2 x word counts: the sample batch's completions have 1 to 29 words,
    # the empty batch 0, the long batch 9 and 5,000, and the non-ASCII batch 1 (the
    # Japanese sentence has no spaces) to 12 (the French sentence).
    assert result.output == (
        f"Checking reward 'words' from plugin {plugin_file} 0.3 (rewardkit_local_words_plugin.Words)\n"
        "  PASS  instantiate                  rewardkit_local_words_plugin.Words with params {'scale': 2.0}\n"
        "  PASS  params_validated             rejects an unknown key; wrong types for scale\n"
        "  PASS  one_finite_float_per_sample  6 samples, scores from 2 to 58\n"
        "  PASS  deterministic                same scores on a repeat and on a fresh instance (seed 0)\n"
        "  PASS  batch_order_invariant        same scores with the batch reversed\n"
        "  PASS  batch_size_invariant         same scores whole, in halves and one at a time (6 samples)\n"
        "  PASS  empty_strings                2 samples, scores from 0 to 0\n"
        "  PASS  long_inputs                  5,000-word completion: 2 samples, scores from 18 to 1e+04\n"
        "  PASS  non_ascii                    6 samples, scores from 2 to 24\n"
        "9 checks: 9 passed\n"
    )


def test_a_failing_check_prints_the_reason_and_exits_1(plugin_file):
    result = invoke("caps", "--plugin", plugin_file)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    # Only the empty batch has a completion without letters; the emoji/CJK samples have letters.
    fail = [line for line in lines if line.startswith("  FAIL")]
    division = 1 + PLUGIN.splitlines().index("            out.append(sum(ch.isupper() for ch in letters) / len(letters))")
    assert fail == [f"  FAIL  empty_strings                reward 'caps': score() raised ZeroDivisionError: "
                    f"division by zero on empty strings (at {plugin_file}:{division})"]
    assert lines[-1] == "9 checks: 8 passed, 1 failed"


def test_unknown_reward_is_a_user_error(plugin_file):
    result = invoke("wrds", "--plugin", plugin_file)
    assert result.exit_code == 2
    assert "Error: unknown reward 'wrds'; did you mean 'words'?" in result.output


@pytest.mark.parametrize("param, message", [
    ("scale=big", "Invalid value for --param: reward 'words': scale: Input should be a valid number"),
    ("scael=2", "Invalid value for --param: reward 'words': scael: Extra inputs are not permitted"),
    ("scale", "Invalid value for --param: expected key=value, got 'scale'"),
])
def test_bad_params_are_user_errors(plugin_file, param, message):
    result = invoke("words", "--plugin", plugin_file, "--param", param)
    assert result.exit_code == 2
    assert message in result.output
    assert "Checking reward" not in result.output  # nothing ran


def test_missing_plugin_file_is_a_user_error(tmp_path):
    result = invoke("words", "--plugin", str(tmp_path / "nope.py"))
    assert result.exit_code == 2
    assert f"plugin '{tmp_path / 'nope.py'}': no such plugin file" in result.output
    assert "Traceback" not in result.output


def test_parse_param_reads_values_as_yaml():
    assert parse_param("n=3") == ("n", 3)
    assert parse_param("x=0.5") == ("x", 0.5)
    assert parse_param("flag=true") == ("flag", True)
    assert parse_param("names=[a, b]") == ("names", ["a", "b"])
    assert parse_param("model=asset:tiny-hate-roberta") == ("model", "asset:tiny-hate-roberta")
    assert parse_param("text=") == ("text", "")


# The built-in rewards keep the contract (toxicity on the shipped tiny classifier).
@pytest.mark.parametrize("args", [
    ["length", "--param", "target_words=10"],
    ["length", "--param", "target_words=10", "--param", "shape=hinge", "--param", "tolerance=2"],
    ["rouge"],
    ["rouge", "--param", "metric=rouge1", "--param", "as_penalty=true"],
    ["toxicity", "--param", "model=asset:tiny-hate-roberta"],
    ["toxicity", "--param", "model=asset:tiny-hate-roberta", "--param", "output=probability"],
])
def test_builtin_rewards_pass(args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    # stdout only: transformers draws a progress bar on stderr while the classifier loads.
    assert result.stdout.startswith(f"Checking reward '{args[0]}' from plugin rewardkit ")
    assert result.stdout.endswith("9 checks: 9 passed\n")
