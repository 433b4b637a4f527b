"""docs/plugins.md, "Rewards you can trust": every Python block runs (fresh interpreter, a directory holding
only the shipped recipes/, as from the repository root) and the recipe fields and commands it documents are
the ones that exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rewardkit.recipe.schema import RewardSpec

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "plugins.md"
TEXT = DOC.read_text(encoding="utf-8")
SECTION = TEXT[TEXT.index("## Rewards you can trust"):]
BLOCKS = [(TEXT.count("\n", 0, TEXT.index(m.group(0))) + 1, m.group(1))
          for m in re.finditer(r"```python\n(.*?)```", SECTION, re.S)]


def test_the_section_has_its_examples():
    assert len(BLOCKS) == 7  # failure policy, async, remote, caching, probes, a recipe's probes, length corr.


@pytest.mark.parametrize("line, body", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_python_block_runs(tmp_path, line, body):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    (tmp_path / "recipes").symlink_to(REPO / "recipes")  # blocks name recipes as a user at the root would
    result = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"docs/plugins.md:{line}: the Python block failed:\n{result.stdout}{result.stderr}"


def test_every_policy_field_is_in_the_table():
    for field in ("on_error", "timeout", "max_skipped_frac", "cache"):
        assert field in RewardSpec.model_fields
        assert f"| `{field}` |" in SECTION, f"docs/plugins.md: recipe field {field} is not in the table"
