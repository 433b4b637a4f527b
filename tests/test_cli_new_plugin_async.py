"""``rewardkit new-plugin NAME --async``: the scaffold's reward has an async score that keeps the contract."""

from __future__ import annotations

import importlib.util
import sys

from click.testing import CliRunner

from rewardkit.cli import cli
from rewardkit.testing import check_reward, run_reward


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def test_async_scaffold_keeps_the_contract(tmp_path):
    result = CliRunner().invoke(cli, ["new-plugin", "judge-stub", "--async", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    source = tmp_path / "rewardkit-judge-stub" / "rewardkit_judge_stub" / "__init__.py"
    text = source.read_text()
    assert "async def score(self, batch: rewardkit.Batch)" in text and "max_concurrency = 4" in text
    module = _load(source, "rewardkit_judge_stub_async_test")
    cls = module.JudgeStub
    assert cls.is_async() and cls.max_batch_size == 32
    assert run_reward(cls, ["a a", "a b"]) == [-0.5, 0.0]
    assert all(r.passed for r in check_reward(cls))


def test_default_scaffold_stays_synchronous(tmp_path):
    result = CliRunner().invoke(cli, ["new-plugin", "plain-stub", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    source = tmp_path / "rewardkit-plain-stub" / "rewardkit_plain_stub" / "__init__.py"
    assert "    def score(self, batch: rewardkit.Batch)" in source.read_text()
    assert "asyncio" not in source.read_text()
    assert not _load(source, "rewardkit_plain_stub_test").PlainStub.is_async()
