"""The plugin author's testing kit: run a reward in isolation and check its contract.

Plain functions::

    from rewardkit.testing import make_batch, run_reward, check_reward

    run_reward("length", ["a b c"], params={"target_words": 3})   # -> [0.0]
    for result in check_reward("length"):
        print(result.status, result.name, result.detail)

The same as pytest fixtures (``reward_batch``, ``reward_runner``,
``reward_contract``, ``reward_registry``), available in any test once
rewardkit is installed (see :mod:`rewardkit.testing.pytest_plugin`), and on
the command line as ``rewardkit check-plugin NAME``.
"""

from rewardkit.testing.checks import (
    CHECK_NAMES,
    CheckResult,
    assert_reward_contract,
    check_batch_size_invariant,
    check_declared_limits,
    check_deterministic,
    check_empty_strings,
    check_long_inputs,
    check_non_ascii,
    check_order_invariant,
    check_params_validated,
    check_reward,
    check_scores,
    score_checked,
)
from rewardkit.testing.probe import (
    PROBES,
    ProbeReport,
    ProbeResult,
    ProbeSample,
    assert_no_preferred_probes,
    probe_recipe,
    probe_reward,
)
from rewardkit.testing.runner import make_batch, make_reward, reward_class, run_reward, seed_everything
from rewardkit.testing.samples import sample_batch

__all__ = [
    "CHECK_NAMES",
    "CheckResult",
    "PROBES",
    "ProbeReport",
    "ProbeResult",
    "ProbeSample",
    "assert_no_preferred_probes",
    "probe_recipe",
    "probe_reward",
    "assert_reward_contract",
    "check_batch_size_invariant",
    "check_declared_limits",
    "check_deterministic",
    "check_empty_strings",
    "check_long_inputs",
    "check_non_ascii",
    "check_order_invariant",
    "check_params_validated",
    "check_reward",
    "check_scores",
    "make_batch",
    "make_reward",
    "reward_class",
    "run_reward",
    "sample_batch",
    "score_checked",
    "seed_everything",
]
