"""KL controllers: the arithmetic of a few updates, and checkpoint round trips."""

import pytest
import torch

from rewardkit.ppo.kl import AdaptiveKLController, FixedKLController, make_kl_controller


def seed_controller():
    # The seed notebook's settings: init 0.2, target 6, horizon 10,000.
    return AdaptiveKLController(init_kl_coef=0.2, target=6.0, horizon=10_000)


def test_adaptive_updates_by_hand():
    ctl = seed_controller()
    assert ctl.value == 0.2
    # KL 12 is twice the target: error 12/6 - 1 = 1, clipped to 0.2;
    # gain n/horizon = 16/10000 -> beta * (1 + 0.2 * 0.0016) = 0.2 * 1.00032.
    assert ctl.update(12.0, n_steps=16) == pytest.approx(0.2 * 1.00032, rel=1e-12)
    # KL 3: error 3/6 - 1 = -0.5, clipped to -0.2 -> multiply by 1 - 0.00032.
    assert ctl.update(3.0, n_steps=16) == pytest.approx(0.2 * 1.00032 * 0.99968, rel=1e-12)
    # KL 6.6: error 0.1, inside the clip; n 100 -> multiply by 1 + 0.1 * 0.01 = 1.001.
    ctl.update(6.6, n_steps=100)
    assert ctl.value == pytest.approx(0.2 * 1.00032 * 0.99968 * 1.001, rel=1e-12)
    # KL exactly on target: error 0, beta unchanged.
    before = ctl.value
    assert ctl.update(6.0, n_steps=16) == before


def test_adaptive_error_clip_is_symmetric_and_bounded():
    # With horizon 1 and n 1 the multiplier is 1 + error itself: the clip
    # shows directly. Any KL far above target gives 1.2, KL 0 gives 0.8.
    ctl = AdaptiveKLController(1.0, target=1.0, horizon=1)
    assert ctl.update(1e9, 1) == pytest.approx(1.2)
    assert ctl.update(0.0, 1) == pytest.approx(1.2 * 0.8)
    # A negative KL estimate (possible per batch) is just "below target".
    assert ctl.update(-5.0, 1) == pytest.approx(1.2 * 0.8 * 0.8)


def test_adaptive_accepts_a_tensor_kl_and_refuses_nan():
    ctl = seed_controller()
    ctl.update(torch.tensor(12.0), 16)
    assert ctl.value == pytest.approx(0.2 * 1.00032)
    with pytest.raises(ValueError, match="current_kl must be finite"):
        ctl.update(float("nan"), 16)
    assert ctl.value == pytest.approx(0.2 * 1.00032)  # unchanged by the refused update


def test_adaptive_rejects_bad_settings():
    with pytest.raises(ValueError, match="target must be > 0"):
        AdaptiveKLController(0.2, target=0, horizon=10)
    with pytest.raises(ValueError, match="horizon must be > 0"):
        AdaptiveKLController(0.2, target=6, horizon=0)
    with pytest.raises(ValueError, match="init_kl_coef must be >= 0"):
        AdaptiveKLController(-0.1, target=6, horizon=10)


def test_adaptive_state_round_trip():
    ctl = seed_controller()
    for kl in (12.0, 9.0, 1.0):
        ctl.update(kl, 16)
    state = ctl.state_dict()
    assert state == {"kind": "adaptive", "value": ctl.value, "target": 6.0, "horizon": 10_000.0}
    fresh = seed_controller()
    fresh.load_state_dict(state)
    assert fresh.value == ctl.value
    # Both continue identically after the restore.
    assert fresh.update(7.0, 16) == ctl.update(7.0, 16)


def test_fixed_controller():
    ctl = FixedKLController(0.05)
    assert ctl.update(100.0, 16) == 0.05  # never moves
    assert ctl.value == 0.05
    assert ctl.state_dict() == {"kind": "fixed", "value": 0.05}
    other = FixedKLController(0.0)
    other.load_state_dict(ctl.state_dict())
    assert other.value == 0.05


def test_loading_the_other_kind_is_refused():
    with pytest.raises(ValueError, match="this controller is adaptive"):
        seed_controller().load_state_dict(FixedKLController(0.1).state_dict())
    with pytest.raises(ValueError, match="this controller is fixed"):
        FixedKLController(0.1).load_state_dict(seed_controller().state_dict())


def test_make_kl_controller():
    ctl = make_kl_controller(True, 0.2, target=6, horizon=10_000)
    assert isinstance(ctl, AdaptiveKLController)
    assert (ctl.value, ctl.target, ctl.horizon) == (0.2, 6.0, 10_000.0)
    fixed = make_kl_controller(False, 0.1, target=6, horizon=10_000)
    assert isinstance(fixed, FixedKLController) and fixed.value == 0.1
    assert isinstance(make_kl_controller(False, 0.1), FixedKLController)
    with pytest.raises(ValueError, match="needs both target and horizon"):
        make_kl_controller(True, 0.2, target=6)
