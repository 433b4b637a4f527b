"""Keep third-party chatter (weight-loading bars, deprecation notes) off the user's terminal.

rewardkit shows its own progress bar per phase; the libraries' own bars and
FutureWarnings about their internals are noise to a user running a recipe.
Real warnings (ours, and UserWarnings) still show. Environment variables do
the work, so nothing heavy is imported here and ``rewardkit --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
import warnings

_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",   # transformers' own bars follow this too
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "DATASETS_VERBOSITY": "error",
}


def quiet_libraries() -> None:
    """Silence transformers/datasets progress bars and info logs, and their FutureWarnings.

    A variable the user already set is left alone.
    """
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|accelerate|datasets)")
    # libraries imported before this call read their settings already; tell them directly
    if "transformers" in sys.modules:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
