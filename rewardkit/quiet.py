"""Keep third-party chatter (weight-loading bars, deprecation notes) off the user's terminal.

rewardkit shows its own progress bar per phase; the libraries' own bars and
FutureWarnings about their internals are noise to a user running a recipe.
Real warnings (ours, and UserWarnings) still show.
"""

from __future__ import annotations

import os
import warnings


def quiet_libraries() -> None:
    """Silence transformers/datasets progress bars and info logs, and their FutureWarnings."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|accelerate|datasets)")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
