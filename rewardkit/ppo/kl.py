"""KL coefficient controllers: how strongly the policy is held near the reference.

The shaped reward is ``score - beta * KL`` (see :func:`rewardkit.ppo.core.shape_rewards`).
:class:`FixedKLController` keeps ``beta`` constant; :class:`AdaptiveKLController`
moves it so the measured KL tracks a target, as in Ziegler et al. (2019),
"Fine-Tuning Language Models from Human Preferences", arXiv:1909.08593, sec. 2.2.

Both share one small interface, so the runner does not care which it holds:
``.value``, ``.update(current_kl, n_steps)``, ``.state_dict()`` and
``.load_state_dict(state)`` (the state goes into checkpoints, so a resumed
run continues with the coefficient it stopped with).

Plain Python floats throughout: no torch import, cheap to checkpoint.
"""

from __future__ import annotations

import math

#: Ziegler et al. (2019) clip the proportional error to this range, so one
#: wild KL measurement moves beta by at most a bounded amount.
ERROR_CLIP = 0.2


def _finite_float(name: str, x) -> float:
    """``float(x)`` (a number or a 0-dim tensor), or a ValueError naming ``name``."""
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


class FixedKLController:
    """A KL coefficient that never changes.

    :param kl_coef: beta, >= 0.
    """

    kind = "fixed"

    def __init__(self, kl_coef: float):
        self.value = _finite_float("kl_coef", kl_coef)
        if self.value < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.value}")

    def update(self, current_kl: float, n_steps: int) -> float:
        """Do nothing (the interface of :class:`AdaptiveKLController`); return ``value``."""
        return self.value

    def state_dict(self) -> dict:
        """The controller's state, for a checkpoint."""
        return {"kind": self.kind, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; a state of another kind is a ValueError."""
        _check_kind(state, self.kind)
        self.value = _finite_float("value", state["value"])

    def __repr__(self) -> str:
        return f"FixedKLController(kl_coef={self.value})"


class AdaptiveKLController:
    """Proportional control of beta towards a target KL (Ziegler et al. 2019, sec. 2.2).

    After each batch: ``e = clip(KL / target - 1, -0.2, 0.2)`` and
    ``beta <- beta * (1 + e * n_steps / horizon)``. A KL above target raises
    beta (more penalty), below lowers it; ``horizon`` (in samples) sets how
    fast: about ``horizon / n_steps`` updates for beta to change by a factor
    ``1 + e``. (The paper writes the gain as a constant ``K_beta``;
    ``n_steps / horizon`` is the form of its released code, which makes the
    speed independent of the batch size.)

    :param init_kl_coef: beta at the start, >= 0.
    :param target: the KL (summed over a response, in nats) to hold, > 0.
    :param horizon: in samples, > 0 (the seed used 10,000).
    """

    kind = "adaptive"

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        self.value = _finite_float("init_kl_coef", init_kl_coef)
        self.target = _finite_float("target", target)
        self.horizon = _finite_float("horizon", horizon)
        if self.value < 0:
            raise ValueError(f"init_kl_coef must be >= 0, got {self.value}")
        if self.target <= 0:
            raise ValueError(f"target must be > 0, got {self.target}")
        if self.horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {self.horizon}")

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move beta after a batch and return the new value.

        :param current_kl: the batch's mean KL per sample (a number or a
            0-dim tensor). A non-finite KL is refused rather than stored, as
            it would poison beta for the rest of the run.
        :param n_steps: samples in the batch (the horizon is counted in samples).
        """
        kl = _finite_float("current_kl", current_kl)
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        error = min(max(kl / self.target - 1.0, -ERROR_CLIP), ERROR_CLIP)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        """The controller's state, for a checkpoint (target and horizon for the record)."""
        return {"kind": self.kind, "value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        """Restore beta from :meth:`state_dict` output.

        Only ``value`` is restored: target and horizon are configuration,
        taken from the recipe the controller was built from.
        """
        _check_kind(state, self.kind)
        self.value = _finite_float("value", state["value"])

    def __repr__(self) -> str:
        return f"AdaptiveKLController(value={self.value}, target={self.target}, horizon={self.horizon})"


def _check_kind(state: dict, kind: str) -> None:
    """Refuse to load a checkpoint of one controller kind into the other."""
    if state.get("kind") != kind or "value" not in state:
        raise ValueError(
            f"cannot load KL controller state {state!r}: this controller is {kind} "
            f"(the recipe's KL settings differ from the checkpoint's)"
        )


def make_kl_controller(
    adaptive: bool,
    init_kl_coef: float,
    target: float | None = None,
    horizon: float | None = None,
) -> AdaptiveKLController | FixedKLController:
    """Build the controller a recipe asks for.

    :param adaptive: True for :class:`AdaptiveKLController`, False for
        :class:`FixedKLController` (which ignores ``target`` and ``horizon``).
    :param init_kl_coef: the initial (or fixed) beta.
    :param target: the adaptive controller's target KL; required when adaptive.
    :param horizon: the adaptive controller's horizon; required when adaptive.
    """
    if not adaptive:
        return FixedKLController(init_kl_coef)
    if target is None or horizon is None:
        raise ValueError("an adaptive KL controller needs both target and horizon")
    return AdaptiveKLController(init_kl_coef, target, horizon)
