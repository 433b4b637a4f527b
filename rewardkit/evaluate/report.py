"""Writing the evaluation: ``eval.json``, ``report.md``, ``report.html`` and the PNGs.

The report is built once as a list of blocks (headings, paragraphs, tables,
images) and rendered twice, to Markdown and to one self-contained HTML page
(PNGs inlined as base64, styles inline, no external request), so the two
can never disagree.

Text that comes from outside the report (prompts, completions, judge and
reward titles, paths) is never read as markup by either renderer: table
cells and headings are literal text, and a paragraph marks each value it
quotes with :func:`lit` or :func:`code`. The Markdown renderer escapes them
(HTML tags, ``|`` and newlines that would break a table, Markdown's own
marks), the HTML one HTML-escapes them.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardkit.evaluate import plots

#: Rows in each of the "largest changes" tables of report.md.
TOP_CHANGES = 8
#: Characters of prompt / completion shown in a table cell (eval.json keeps everything).
PROMPT_CHARS, COMPLETION_CHARS = 160, 200
#: Above this share of empty completions after tuning, the report warns of collapse.
EMPTY_WARNING = 0.2
#: A relative ROUGE-L drop larger than this is flagged as lost summarising quality.
ROUGE_WARNING = -0.3

FILES = ("eval.json", "report.md", "report.html")


_LIT, _END_LIT, _CODE, _END_CODE = "\ue000", "\ue001", "\ue002", "\ue003"
_SPAN = re.compile(f"{_LIT}(.*?){_END_LIT}|{_CODE}(.*?){_END_CODE}", re.S)
_MARKS = re.compile(f"[{_LIT}{_END_LIT}{_CODE}{_END_CODE}]")


def lit(value: Any) -> str:
    """Quote ``value`` in a paragraph as plain text: no renderer reads markup in it."""
    return _LIT + _MARKS.sub("", str(value)) + _END_LIT


def code(value: Any) -> str:
    """Quote ``value`` in a paragraph as a code span (``like this``), its content literal."""
    return _CODE + _MARKS.sub("", str(value)) + _END_CODE


def plain(text: str) -> str:
    """``text`` with the quoting marks of :func:`lit` and :func:`code` removed."""
    return _MARKS.sub("", text)


@dataclass
class Block:
    """One piece of the report: ``kind`` is h1/h2/h3/p/warn/table/image/details.

    The text of a ``p`` may use ``**bold**`` and ``code`` marks, with outside
    values quoted by :func:`lit` / :func:`code`; headings, warnings, the
    summary of ``details`` and table cells are literal text.
    """

    kind: str
    text: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    plot: plots.Plot | None = None


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a table: 4 significant digits; ``n/a`` for ``None``."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}g}"


def pct(x: float | None) -> str:
    """A relative change as a signed percentage (``-18.7%``)."""
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def ci(c: list[float] | None) -> str:
    """A confidence interval as ``[low, high]``."""
    return "n/a (fewer than 2 samples)" if c is None else f"[{fmt(c[0])}, {fmt(c[1])}]"


def _mean_std(side: dict) -> str:
    return "n/a" if side["mean"] is None else f"{fmt(side['mean'])} ± {fmt(side['std'])}"


def _cmp_cells(c: dict) -> list[str]:
    return [_mean_std(c["before"]), _mean_std(c["after"]), fmt(c["diff"]), pct(c["relative_change"]), ci(c["ci"])]


def _clip(text: str | None, n: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= n else flat[:n - 1] + "…"


def primary(result: dict) -> tuple[str, str, bool]:
    """The measure the qualitative table is sorted by: ``(path, title, higher_is_better)``.

    The lead judge (the first independent one), since it is the one the
    policy could not game; the total reward when there is no judge.
    """
    from rewardkit.evaluate.pipeline import lead_judge

    key = lead_judge(result["judges"])
    if key is not None:
        j = result["judges"][key]
        return f"judges/{key}", j["title"], j["higher_is_better"]
    return "reward_total", "total reward", True


def _value(side: dict, path: str) -> float:
    if path == "reward_total":
        return side["reward_total"]
    return side["judges"][path.split("/", 1)[1]]


def ranked_samples(result: dict) -> list[tuple[float, dict]]:
    """``(improvement, sample)`` pairs, most improved first, most worsened last.

    Improvement is the change of the primary measure in its good direction,
    so a fall in toxicity probability and a rise in reward both count positive.
    """
    path, _, higher = primary(result)
    sign = 1.0 if higher else -1.0
    pairs = [(sign * (_value(s["after"], path) - _value(s["before"], path)), s) for s in result["samples"]]
    return sorted(pairs, key=lambda p: p[0], reverse=True)


def warnings_for(result: dict) -> list[str]:
    """Signs that the improvement may not be real: reward hacking, collapse, lost quality."""
    out = []
    has_independent = any(j["independent"] for j in result["judges"].values())
    for j in result["judges"].values():
        if j["independent"]:
            continue
        if has_independent:
            out.append(f"Judge {j['title']} is, or shares its model with, a reward the policy was trained on: "
                       f"read it as the reward model's own view, not as independent evidence.")
        else:
            out.append(f"Judge {j['title']} is, or shares its model with, a reward the policy was trained on, so "
                       f"it cannot reveal reward hacking; add an independent judge (e.g. --judge profanity-check).")
    for j in result.get("skipped_judges", []):
        out.append(f"Judge {j.get('title') or j.get('spec')} was not run: {j['reason']}. Install it with "
                   f"{j['install']} to see its view.")
    head = result.get("headline", {})
    if head.get("reward", {}).get("improved") and head.get("judge", {}).get("improved") is False:
        out.append("The reward rose but the lead judge did not improve: the policy may be fooling the reward "
                   "model (reward hacking). Read the largest changes below.")
    quality = result["quality"]
    empty = quality.get("empty", {})
    empty_after = empty.get("after", {}).get("mean")
    if empty_after is not None and empty_after > EMPTY_WARNING:
        out.append(f"{empty_after:.0%} of tuned completions are empty (base policy: "
                   f"{empty['before']['mean']:.0%}): the policy may be collapsing onto what the reward model "
                   f"likes. Consider a length or rouge penalty.")
    rouge = quality.get("rougeL", {}).get("relative_change")
    if rouge is not None and rouge < ROUGE_WARNING:
        out.append(f"ROUGE-L against the references fell by {-rouge:.0%}: the summaries may no longer summarise.")
    return out


def build_blocks(result: dict, plot_list: list[plots.Plot]) -> list[Block]:
    """The whole report as blocks, in reading order."""
    cfg = result["config"]
    title = result.get("run_dir") or result.get("adapter")
    b = [Block("h1", f"Evaluation: {title}")]
    head = result["headline"]
    if "judge" in head:
        j = head["judge"]
        kind = "independent judge" if result["judges"][j["key"]]["independent"] else "judge, not independent"
        b.append(Block("p", f"**{lit(j['title'])}** ({kind}): {fmt(j['before'])} before → {fmt(j['after'])} "
                            f"after ({pct(j['relative_change'])}; 95% CI of the change {ci(j['ci'])})."))
    r = head["reward"]
    b.append(Block("p", f"**Total reward** (what PPO optimised): {fmt(r['before'])} before → {fmt(r['after'])} "
                        f"after (95% CI of the change {ci(r['ci'])})."))
    start = (f"the starting adapter {code(result['start_adapter'])}" if result.get("start_adapter")
             else "the base model, adapter off")
    b.append(Block("p", f"{cfg['num_samples']} held-out prompts (the first of {cfg['test_prompts']} in the test "
                        f"split), sampled with the policy the run started from (before: {start}) and with the "
                        f"trained adapter (after), with the same prompts, token budgets and seeds (seed {cfg['seed']}). Recipe {code(result['recipe'])}, "
                        f"adapter {code(result['adapter'])}, device {lit(result['device'])}. Standard deviations are "
                        f"population ones; intervals are paired percentile bootstraps of after − before."))
    for w in warnings_for(result):
        b.append(Block("warn", w))

    head_cols = ["before (mean ± std)", "after (mean ± std)", "change", "relative", "95% CI of change"]
    b.append(Block("h2", "Reward model (what PPO optimised)"))
    b.append(Block("table", headers=["component", "weight", *head_cols],
                   rows=[[name, fmt(c["weight"]), *_cmp_cells(c)] for name, c in result["rewards"].items()]))
    b.append(Block("p", "Components are raw scores before weighting; `total` is the weighted sum PPO maximises "
                        "(higher is better)."))
    b.append(Block("h2", "Independent judges"))
    if result["judges"]:
        b.append(Block("table", headers=["judge", "better", *head_cols, "independent"],
                       rows=[[j["title"], "higher" if j["higher_is_better"] else "lower", *_cmp_cells(j),
                              fmt(j["independent"])] for j in result["judges"].values()]))
        for j in result["judges"].values():
            b.append(Block("p", f"{lit(j['title'])}: {lit(j['description'])}; scores the {lit(j['text'])}."))
    else:
        b.append(Block("p", "No judge was configured."))
    b.append(Block("h2", "Quality: do the summaries still summarise?"))
    names = {"rougeL": "ROUGE-L F1 vs reference", "words": "length (words)", "tokens": "length (tokens)",
             "empty": "empty completions (share)"}
    b.append(Block("table", headers=["measure", *head_cols],
                   rows=[[names.get(k, k), *_cmp_cells(c)] for k, c in result["quality"].items()]))
    for plot in plot_list:
        b.append(Block("h3", plot.caption))
        b.append(Block("image", plot=plot))
    b += _change_blocks(result)
    return b


def _change_blocks(result: dict) -> list[Block]:
    ranked = ranked_samples(result)
    if not ranked:
        return []
    path, title, higher = primary(result)
    out = [Block("h2", f"Largest changes, by {title}"),
           Block("p", f"Sorted by the change of {lit(title)} in its good direction ({'higher' if higher else 'lower'} "
                      f"is better): most improved first. Every sample, with all scores, is in eval.json.")]
    # every prompt opens with the same template text: show what differs
    opening = os.path.commonprefix([s["prompt"] for _, s in ranked]) if len(ranked) > 1 else ""
    if len(opening) > 10:
        out.append(Block("p", f"Prompts are shown without the opening they all share: {code(_clip(opening, 80))}"))
    else:
        opening = ""
    headers = ["#", "prompt", "before", "after", f"{title} before → after", "reward before → after"]

    def row(s: dict) -> list[str]:
        return [str(s["index"]), _clip(s["prompt"][len(opening):], PROMPT_CHARS), _clip(s["before"]["completion"], COMPLETION_CHARS),
                _clip(s["after"]["completion"], COMPLETION_CHARS),
                f"{fmt(_value(s['before'], path), 3)} → {fmt(_value(s['after'], path), 3)}",
                f"{fmt(s['before']['reward_total'], 3)} → {fmt(s['after']['reward_total'], 3)}"]

    k = min(TOP_CHANGES, len(ranked))
    improved = [s for gain, s in ranked[:k] if gain > 0]
    worsened = [s for gain, s in reversed(ranked[-k:]) if gain < 0]
    out.append(Block("h3", f"Most improved ({len(improved)})"))
    out.append(Block("table", headers=headers, rows=[row(s) for s in improved]) if improved
               else Block("p", "No sample improved."))
    out.append(Block("h3", f"Most worsened ({len(worsened)})"))
    out.append(Block("table", headers=headers, rows=[row(s) for s in worsened]) if worsened
               else Block("p", "No sample got worse."))
    out.append(Block("details", text=f"All {len(ranked)} samples, most improved first", headers=headers,
                     rows=[row(s) for _, s in ranked]))
    return out


# -- renderers ----------------------------------------------------------------------------------------------------
_MD_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "`": "\\`", "*": "\\*", "_": "\\_",
               "~": "\\~", "|": "\\|"}


def md_text(text: Any, *, heading: bool = False) -> str:
    """``text`` as literal Markdown on one line.

    HTML tags and entities, emphasis, code, strike-through and table pipes
    are escaped always; brackets only where the text could form a link
    (``](``), and ``#`` only in a heading, so that ordinary text such as
    ``#Person1#`` or ``[0.1, 0.2]`` stays readable in the file.
    """
    flat = " ".join(plain(str(text)).splitlines())
    escapes = dict(_MD_ESCAPES)
    if "](" in flat or "][" in flat:
        escapes["["] = "\\["
    if heading:
        escapes["#"] = "\\#"
    return "".join(escapes.get(ch, ch) for ch in flat)


def md_code(text: Any) -> str:
    """``text`` as a Markdown code span, fenced by more backticks than it contains; one line."""
    flat = " ".join(plain(str(text)).splitlines())
    fence = "`" * (max((len(run) for run in re.findall("`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def _md_inline(text: str) -> str:
    """A paragraph's text: its own marks kept, every quoted value escaped."""
    return _SPAN.sub(lambda m: md_text(m.group(1)) if m.group(1) is not None else md_code(m.group(2)),
                     " ".join(text.splitlines()))


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(md_text(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(md_text(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(blocks: list[Block]) -> str:
    """The report as GitHub-flavoured Markdown (images referenced by file name)."""
    parts = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            parts.append("#" * int(b.kind[1]) + " " + md_text(b.text, heading=True))
        elif b.kind == "p":
            parts.append(_md_inline(b.text))
        elif b.kind == "warn":
            parts.append(f"> **Warning:** {md_text(b.text)}")
        elif b.kind == "table":
            parts.append(_md_table(b.headers, b.rows))
        elif b.kind == "image":
            parts.append(f"![{md_text(b.plot.caption)}]({b.plot.filename})")
        elif b.kind == "details":
            parts.append(f"<details><summary>{html.escape(plain(b.text))}</summary>\n\n"
                         f"{_md_table(b.headers, b.rows)}\n\n</details>")
    return "\n\n".join(parts) + "\n"


def _inline_html(text: str) -> str:
    """A paragraph's text as HTML: its **bold** and `code` marks become tags, quoted values are escaped."""
    quoted: list[str] = []

    def hold(m: re.Match) -> str:
        quoted.append(html.escape(m.group(1)) if m.group(1) is not None
                      else f"<code>{html.escape(m.group(2))}</code>")
        return f"{_LIT}{len(quoted) - 1}{_END_LIT}"  # a placeholder no mark can match across

    out = html.escape(_SPAN.sub(hold, text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(f"{_LIT}(\\d+){_END_LIT}", lambda m: quoted[int(m.group(1))], out)


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(plain(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(plain(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f3f3f3}.warn{background:#fff3cd;border-left:4px solid #e0a800;
padding:0.6em 1em}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}"""


def render_html(blocks: list[Block], out_dir: Path) -> str:
    """The report as one self-contained HTML page: PNGs inlined as base64 data URIs."""
    title = next((plain(b.text) for b in blocks if b.kind == "h1"), "rewardkit evaluation")
    parts = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            parts.append(f"<{b.kind}>{html.escape(plain(b.text))}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{_inline_html(b.text)}</p>")
        elif b.kind == "warn":
            parts.append(f'<p class="warn"><strong>Warning:</strong> {html.escape(plain(b.text))}</p>')
        elif b.kind == "table":
            parts.append(_html_table(b.headers, b.rows))
        elif b.kind == "image":
            data = base64.b64encode((out_dir / b.plot.filename).read_bytes()).decode("ascii")
            parts.append(f'<img alt="{html.escape(b.plot.caption)}" width="{b.plot.width}" '
                         f'src="data:image/png;base64,{data}">')
        elif b.kind == "details":
            parts.append(f"<details><summary>{html.escape(plain(b.text))}</summary>{_html_table(b.headers, b.rows)}"
                         f"</details>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


# -- the files ----------------------------------------------------------------------------------------------------
def make_plots(result: dict, out_dir: Path, metrics: list[dict] | None = None) -> list[plots.Plot]:
    """Write the PNGs: training curves and components (when ``metrics`` has steps), distributions."""
    written = [
        plots.plot_training(metrics or [], out_dir / "training.png"),
        plots.plot_components(metrics or [], out_dir / "components.png"),
    ]
    panels = []
    for j in result["judges"].values():
        better = "higher" if j["higher_is_better"] else "lower"
        panels.append((f"{j['title']}: judge, {better} is better", *_sides(result, "judges", j["key"])))
    for name in result["rewards"]:
        if name != "total":
            panels.append((f"{name}: reward, higher is better", *_sides(result, "rewards", name)))
    written.append(plots.plot_distributions(panels, out_dir / "distributions.png"))
    return [p for p in written if p is not None]


def _sides(result: dict, group: str, key: str) -> tuple[list[float], list[float]]:
    """Every sample's score before and after; samples a reward gave no score (``None``) left out."""
    def side(which):
        return [v for v in (s[which][group][key] for s in result["samples"]) if v is not None]

    return side("before"), side("after")


def write_report(result: dict, out_dir: str | Path, *, metrics: list[dict] | None = None) -> list[Path]:
    """Write every file of the evaluation into ``out_dir``; returns their paths.

    ``result`` gains ``plots`` (file name, caption and size of each PNG)
    before ``eval.json`` is written.

    :param metrics: the run's ``metrics.jsonl`` records, for the training plots.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_list = make_plots(result, out, metrics)
    result["plots"] = [{"file": p.filename, "caption": p.caption, "width": p.width, "height": p.height}
                       for p in plot_list]
    result["warnings"] = warnings_for(result)
    (out / "eval.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    blocks = build_blocks(result, plot_list)
    (out / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(render_html(blocks, out), encoding="utf-8")
    return [out / name for name in FILES] + [out / p.filename for p in plot_list]
