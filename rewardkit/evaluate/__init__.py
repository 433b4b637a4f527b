"""``rewardkit eval``: did the run really do what its reward says?

The base policy (adapter off) and the tuned policy (adapter on) are sampled
on the same held-out prompts with the same seeds, then scored by every reward
of the recipe and by judges the policy never trained against, and their
summaries' quality is measured against the references. Modules:

- :mod:`~rewardkit.evaluate.stats`: mean/std, relative change, bootstrap CI;
- :mod:`~rewardkit.evaluate.sampling`: both sides, same prompts and seeds;
- :mod:`~rewardkit.evaluate.judges`: the independent judges;
- :mod:`~rewardkit.evaluate.pipeline`: the evaluation top to bottom;
- :mod:`~rewardkit.evaluate.plots` and :mod:`~rewardkit.evaluate.report`: the files.

``eval.json`` holds every number: ``config``, ``rewards`` (``total`` and
each component), ``judges``, ``quality`` (``rougeL``, ``words``, ``tokens``,
``empty``), each as :func:`~rewardkit.evaluate.stats.compare` gives it;
``headline``; ``warnings``; ``plots``; ``timing``; and ``samples`` (both
completions of every prompt with all their scores).

Heavy libraries load inside functions: importing this package is cheap.
"""

from rewardkit.evaluate.pipeline import EvalOptions, evaluate, load_run, summary_of
from rewardkit.evaluate.report import write_report
from rewardkit.evaluate.stats import bootstrap_diff_ci, compare, relative_change, summarize

__all__ = ["EvalOptions", "bootstrap_diff_ci", "compare", "evaluate", "load_run", "relative_change", "summarize",
           "summary_of", "write_report"]
