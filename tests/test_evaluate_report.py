"""The report files, from a synthetic run directory and synthetic scores (no model is loaded)."""

import base64
import json
import re
import struct
import zlib

import pytest
from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.evaluate.pipeline import build_result
from rewardkit.evaluate.report import ranked_samples, write_report
from rewardkit.evaluate.sampling import Generations
from rewardkit.rundir import read_jsonl

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, checking the signature and the chunk's CRC."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:16 + 13]
    (crc,) = struct.unpack(">I", data[29:33])
    assert zlib.crc32(kind + body) == crc
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the closing chunk: the file is complete
    return struct.unpack(">II", body[:8])


def write_metrics(run_dir, steps=6):
    lines = []
    for s in range(steps):
        lines.append({"step": s, "reward/total_mean": 0.5 + 0.2 * s, "reward/total_std": 0.3,
                      "reward/toxicity_mean": 1.0 + 0.25 * s, "reward/toxicity_std": 0.4,
                      "reward/length_mean": -0.1 * (s % 2), "reward/length_std": 0.05,
                      "kl": 0.02 * s, "kl_coef": 0.2 - 0.001 * s, "policy/entropy": 3.0})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))


PROMPTS = ["Summarize: <script>alert(1)</script> A and B talk.", "Summarize: C | D argue.", "Summarize: E asks F.",
           "Summarize: G thanks H."]
REFS = ["A and B talk.", "C and D argue.", "E asks F a question.", "G thanks H."]
BEFORE = Generations(["A and B talk, idiot.", "C and D argue.", "E asks F, you moron.", "G thanks H."], [6, 5, 7, 4])
AFTER = Generations(["A and B talk.", "C and D argue, stupid.", "E asks F.", "G thanks H."], [5, 7, 4, 4])
# judge P(profane): sample 0 improves by 0.8, sample 1 worsens by 0.7, sample 2 improves by 0.9, 3 unchanged
JUDGE = ([0.9, 0.1, 0.95, 0.05], [0.1, 0.8, 0.05, 0.05])
SCORES = {"reward/total": ([0.0, 2.0, -0.5, 2.0], [2.0, 0.5, 2.0, 2.0]),
          "reward/toxicity": ([0.0, 2.0, -0.5, 2.0], [2.0, 0.5, 2.0, 2.0]),
          "reward/length": ([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]),
          "judge/profanity": JUDGE,
          "judge/p-hate": ([0.8, 0.2, 0.9, 0.1], [0.2, 0.6, 0.1, 0.1])}
JUDGES = [{"key": "profanity", "title": "P(profane)", "description": "alt-profanity-check", "higher_is_better": False,
           "independent": True, "text": "completion"},
          {"key": "p-hate", "title": "P(hate)", "description": "a classifier", "higher_is_better": False,
           "independent": False, "text": "completion"}]
HEADER = {"run_dir": "runs/synthetic", "recipe": "recipes/quickstart.yaml", "adapter": "runs/synthetic/final/adapter",
          "model": "asset:tiny-t5", "device": "cpu",
          "config": {"num_samples": 4, "requested_samples": 4, "test_prompts": 10, "batch_size": 2, "seed": 1234,
                     "judges": ["profanity-check", "x"], "generation": {}}}


@pytest.fixture
def report(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_metrics(run_dir)
    result = build_result(HEADER, PROMPTS, REFS, BEFORE, AFTER, SCORES, JUDGES, {"toxicity": 1.0, "length": 0.2},
                          seed=1234)
    files = write_report(result, run_dir, metrics=read_jsonl(run_dir / "metrics.jsonl"))
    return run_dir, result, files


def test_files_exist(report):
    run_dir, _, files = report
    names = sorted(f.name for f in files)
    assert names == ["components.png", "distributions.png", "eval.json", "report.html", "report.md", "training.png"]
    assert all(f.is_file() and f.stat().st_size > 0 for f in files)


def test_pngs_are_valid_with_expected_size(report):
    run_dir, result, _ = report
    import matplotlib.image

    # 10 x 3.6 inches at 100 dpi per row of panels, at most 3 panels per row:
    # training: 2 panels (reward, KL) -> 1 row; components: toxicity, length -> 1 row;
    # distributions: 2 judges + 2 components = 4 panels -> 2 rows
    expected = {"training.png": (1000, 360), "components.png": (1000, 360), "distributions.png": (1000, 720)}
    for name, size in expected.items():
        data = (run_dir / name).read_bytes()
        assert png_size(data) == size, name
        pixels = matplotlib.image.imread(run_dir / name)  # decodes every row: a truncated file would fail
        assert pixels.shape[:2] == (size[1], size[0])
        assert pixels[..., :3].std() > 0.05  # not a blank canvas
    assert {p["file"]: (p["width"], p["height"]) for p in result["plots"]} == expected


def test_eval_json_has_every_number(report):
    run_dir, _, _ = report
    data = json.loads((run_dir / "eval.json").read_text())
    j = data["judges"]["profanity"]
    # P(profane) means: before (0.9+0.1+0.95+0.05)/4 = 0.5, after (0.1+0.8+0.05+0.05)/4 = 0.25: -50%
    assert j["before"]["mean"] == pytest.approx(0.5) and j["after"]["mean"] == pytest.approx(0.25)
    assert j["relative_change"] == pytest.approx(-0.5)
    assert j["ci"][0] <= j["diff"] <= j["ci"][1]
    assert data["headline"]["judge"] == {"key": "profanity", "title": "P(profane)", "before": pytest.approx(0.5),
                                         "after": pytest.approx(0.25), "relative_change": pytest.approx(-0.5),
                                         "ci": j["ci"], "improved": True}
    # total reward means 3.5/4 = 0.875 -> 6.5/4 = 1.625
    assert data["rewards"]["total"]["after"]["mean"] == pytest.approx(1.625)
    assert data["rewards"]["toxicity"]["weight"] == 1.0 and data["rewards"]["length"]["weight"] == 0.2
    # words: "A and B talk, idiot." is 5 words, then 4, 5, 3 -> mean 17/4; after 4, 5, 3, 3 -> 15/4
    assert data["quality"]["words"]["before"]["mean"] == pytest.approx(17 / 4)
    assert data["quality"]["words"]["after"]["mean"] == pytest.approx(15 / 4)
    assert data["quality"]["tokens"]["before"]["mean"] == pytest.approx(22 / 4)
    assert data["quality"]["rougeL"]["after"]["mean"] > data["quality"]["rougeL"]["before"]["mean"]
    assert data["quality"]["empty"]["after"]["mean"] == 0.0
    assert len(data["samples"]) == 4 and data["samples"][2]["after"]["judges"]["profanity"] == 0.05
    # P(hate) shares the reward's model: flagged, and the report says so
    assert any("P(hate)" in w and "shares its model with" in w for w in data["warnings"])


def test_qualitative_order_largest_changes_either_way(report):
    _, result, _ = report
    # lower P(profane) is better: improvements 0.9 - 0.05 = 0.9 (sample 2), 0.8 (sample 0), 0 (3), -0.7 (1)
    order = [s["index"] for _, s in ranked_samples(result)]
    assert order == [2, 0, 3, 1]


def test_markdown_report(report):
    run_dir, _, _ = report
    md = (run_dir / "report.md").read_text()
    assert "**P(profane)** (independent judge): 0.5 before → 0.25 after (-50.0%" in md
    improved = md.split("### Most improved (2)")[1].split("### Most worsened")[0]
    assert improved.index("| 2 |") < improved.index("| 0 |")        # largest improvement first
    worsened = md.split("### Most worsened (1)")[1]
    assert "C and D argue, stupid." in worsened
    assert "C \\| D argue" in md                                        # a pipe in text cannot break the table
    assert "![Training: total reward and KL per PPO step (from metrics.jsonl)](training.png)" in md


def test_html_is_self_contained_and_escaped(report):
    run_dir, result, _ = report
    page = (run_dir / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(result["plots"]) == 3
    assert all(base64.b64decode(i)[:8] == PNG_SIGNATURE for i in images)
    assert not re.search(r'(src|href)="(?!data:)', page)   # nothing fetched from elsewhere
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_no_metrics_no_training_plots(tmp_path):
    result = build_result(HEADER, PROMPTS, REFS, BEFORE, AFTER, SCORES, JUDGES, {"toxicity": 1.0, "length": 0.2},
                          seed=1)
    files = write_report(result, tmp_path / "out", metrics=[])
    assert sorted(f.name for f in files) == ["distributions.png", "eval.json", "report.html", "report.md"]


def test_cli_needs_a_target():
    result = CliRunner().invoke(cli, ["eval"])
    assert result.exit_code == 2
    assert "give a RUN_DIR, or both --recipe RECIPE and --adapter PATH" in result.output


def test_cli_rejects_a_directory_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(cli, ["eval", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path} is not a run directory: no recipe.yaml in it"


def test_cli_rejects_run_dir_with_recipe(tmp_path):
    result = CliRunner().invoke(cli, ["eval", str(tmp_path), "--recipe", "r.yaml"])
    assert result.exit_code == 2
    assert "give RUN_DIR, or --recipe and --adapter, not both" in result.output


def test_lead_judge_is_the_first_independent_one(tmp_path):
    # P(hate) is listed first but shares the reward's model: the headline and the sorting use P(profane)
    result = build_result(HEADER, PROMPTS, REFS, BEFORE, AFTER, SCORES, JUDGES[::-1], {"toxicity": 1.0, "length": 0.2},
                          seed=1)
    assert result["headline"]["judge"]["key"] == "profanity"
    assert [s["index"] for _, s in ranked_samples(result)] == [2, 0, 3, 1]


def test_common_prompt_opening_is_not_repeated(report):
    run_dir, _, _ = report
    md = (run_dir / "report.md").read_text()
    # all four prompts open with "Summarize: ", so the table shows what follows
    assert "Prompts are shown without the opening they all share: `Summarize:`" in md
    assert "| 1 | C \\| D argue. |" in md


def test_warning_asks_for_an_independent_judge_only_when_there_is_none():
    from rewardkit.evaluate.report import warnings_for

    only_reward_model = [j for j in JUDGES if j["key"] == "p-hate"]
    scores = {k: v for k, v in SCORES.items() if k != "judge/profanity"}
    alone = build_result(HEADER, PROMPTS, REFS, BEFORE, AFTER, scores, only_reward_model, {"toxicity": 1.0,
                         "length": 0.2}, seed=1)
    assert any("add an independent judge" in w for w in warnings_for(alone))
    both = build_result(HEADER, PROMPTS, REFS, BEFORE, AFTER, SCORES, JUDGES, {"toxicity": 1.0, "length": 0.2}, seed=1)
    assert not any("add an independent judge" in w for w in warnings_for(both))
    assert any("the reward model's own view" in w for w in warnings_for(both))
