"""PNG plots for the report, drawn with matplotlib's Agg canvas.

Figures are built on :class:`matplotlib.figure.Figure` with an explicit Agg
canvas, never through ``pyplot``: no global backend is switched, no window
opens, and nothing leaks between calls (safe in notebooks and threads).

Sizes are fixed (:data:`DPI`, :data:`WIDTH_IN`, :data:`ROW_IN`) and saved
without ``bbox_inches="tight"``, so a figure of ``r`` rows is exactly
``WIDTH_IN * DPI`` by ``r * ROW_IN * DPI`` pixels; tests check it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

#: Pixels per inch of every PNG.
DPI = 100
#: Width of every figure, inches.
WIDTH_IN = 10.0
#: Height of one row of panels, inches.
ROW_IN = 3.6
#: Panels per row in the grid figures.
COLUMNS = 3

BEFORE_COLOR, AFTER_COLOR = "#8c8c8c", "#d6604d"


@dataclass(frozen=True)
class Plot:
    """A written PNG: file name (relative to the report), caption, and pixel size."""

    filename: str
    caption: str
    width: int
    height: int


def _figure(rows: int, cols: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, ROW_IN * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _save(fig, path: Path, caption: str) -> Plot:
    fig.savefig(path, dpi=DPI, format="png")
    width, height = (round(v * DPI) for v in fig.get_size_inches())
    return Plot(path.name, caption, width, height)


def _series(metrics: list[dict], key: str) -> tuple[list[int], list[float]]:
    pairs = [(m["step"], m[key]) for m in metrics if isinstance(m.get(key), (int, float)) and "step" in m]
    return [p[0] for p in pairs], [float(p[1]) for p in pairs]


def _band(ax, metrics: list[dict], name: str, color: str, label: str) -> None:
    """Mean per step with a ±1 std band (when the std was logged)."""
    steps, means = _series(metrics, f"{name}_mean")
    ax.plot(steps, means, color=color, label=label, marker="o" if len(steps) < 30 else None, markersize=3)
    s_steps, stds = _series(metrics, f"{name}_std")
    if s_steps == steps and stds:
        ax.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=color, alpha=0.2, linewidth=0)


def plot_training(metrics: list[dict], path: Path) -> Plot | None:
    """Total reward (mean ± std) and KL per PPO step, side by side; ``None`` without metrics."""
    if not metrics:
        return None
    fig, (ax_r, ax_kl) = _figure(1, 2)
    _band(ax_r, metrics, "reward/total", "#2166ac", "total reward")
    ax_r.set(title="Total reward per step (mean ± std)", xlabel="PPO step", ylabel="reward")
    steps, kl = _series(metrics, "kl")
    ax_kl.plot(steps, kl, color="#b2182b", label="KL(policy ‖ reference)")
    ax_kl.axhline(0.0, color="black", linewidth=0.5)
    c_steps, coef = _series(metrics, "kl_coef")
    if coef:
        twin = ax_kl.twinx()
        twin.plot(c_steps, coef, color="#999999", linestyle="--", label="KL coefficient")
        twin.set_ylabel("KL coefficient")
        twin.legend(loc="lower right", fontsize=8)
    ax_kl.set(title="KL to the reference policy per step", xlabel="PPO step", ylabel="KL (nats)")
    ax_kl.legend(loc="upper left", fontsize=8)
    return _save(fig, path, "Training: total reward and KL per PPO step (from metrics.jsonl)")


def component_names(metrics: list[dict]) -> list[str]:
    """Reward components logged in ``metrics.jsonl`` (keys ``reward/<name>_mean``, total excluded), in order."""
    names: list[str] = []
    for record in metrics:
        for key in record:
            if key.startswith("reward/") and key.endswith("_mean"):
                name = key[len("reward/"):-len("_mean")]
                if name != "total" and name not in names:
                    names.append(name)
    return names


def _grid(n: int) -> tuple[int, int]:
    cols = min(max(n, 1), COLUMNS)
    return math.ceil(max(n, 1) / cols), cols


def plot_components(metrics: list[dict], path: Path) -> Plot | None:
    """One panel per reward component: its raw mean ± std per step; ``None`` when none was logged."""
    names = component_names(metrics)
    if not names:
        return None
    fig, axes = _figure(*_grid(len(names)))
    for ax, name in zip(axes, names):
        _band(ax, metrics, f"reward/{name}", "#1b7837", name)
        ax.set(title=f"{name} (raw, before weighting)", xlabel="PPO step", ylabel="score")
    for ax in axes[len(names):]:
        ax.set_axis_off()
    return _save(fig, path, "Each reward component per PPO step (mean ± std of the raw score)")


def plot_distributions(panels: list[tuple[str, list[float], list[float]]], path: Path) -> Plot | None:
    """Histograms before vs after, one panel per measure, on shared bins.

    :param panels: ``(title, before, after)`` per measure.
    """
    if not panels:
        return None
    import numpy as np

    fig, axes = _figure(*_grid(len(panels)))
    for ax, (title, before, after) in zip(axes, panels):
        values = [v for v in [*before, *after] if math.isfinite(v)]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 21)
        ax.hist(before, bins=bins, color=BEFORE_COLOR, alpha=0.6, label="before (base)")
        ax.hist(after, bins=bins, color=AFTER_COLOR, alpha=0.6, label="after (tuned)")
        for vals, color in ((before, BEFORE_COLOR), (after, AFTER_COLOR)):
            if vals:
                ax.axvline(float(np.mean(vals)), color=color, linestyle="--", linewidth=1.5)
        ax.set(title=title, ylabel="samples")
        ax.legend(fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    return _save(fig, path, "Distributions before vs after on the held-out prompts (dashed: means)")
