"""What ``Policy.reference`` is, for training and for eval (``build_policy(reference_adapter=...)``).

Training from an adapter compares against a frozen copy of it; eval of a trained
adapter compares against the policy its run started from: the base model, or the
run's starting adapter. Getting this wrong makes eval's "before" equal "after".
"""

import torch

from rewardkit.policy import build_policy
from rewardkit.recipe.schema import LoraSection, ModelSection

CPU = torch.device("cpu")
LORA = LoraSection(r=4, alpha=8, target_modules=["q", "v"])


def _save_adapter(path, seed):
    """A LoRA adapter on the tiny T5 with non-zero B, so it is a different policy from the base."""
    policy, _ = build_policy(ModelSection(name="asset:tiny-t5"), LORA, value_head_dropout=0.0, device=CPU)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    policy.model.save_pretrained(str(path))
    return path


def _logits(policy, reference: bool):
    ids = torch.tensor([[5, 6, 7, 8, 1]])
    dec = torch.tensor([[0, 9, 10, 11]])
    ctx = policy.reference() if reference else torch.no_grad()
    with ctx, torch.no_grad():
        return policy.model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=dec).logits


def test_training_reference_is_the_starting_adapter(tmp_path):
    start = _save_adapter(tmp_path / "sft", seed=0)
    policy, _ = build_policy(ModelSection(name="asset:tiny-t5", adapter=str(start)), LORA,
                             value_head_dropout=0.0, device=CPU)
    torch.testing.assert_close(_logits(policy, True), _logits(policy, False), rtol=0, atol=0)


def test_eval_reference_is_the_base_model_or_the_runs_starting_adapter(tmp_path):
    start = _save_adapter(tmp_path / "sft", seed=0)
    trained = _save_adapter(tmp_path / "trained", seed=1)
    base, _ = build_policy(ModelSection(name="asset:tiny-t5"), LORA, value_head_dropout=0.0, device=CPU)
    with base.reference():
        base_logits = _logits(base, False)
    sft, _ = build_policy(ModelSection(name="asset:tiny-t5", adapter=str(start)), LORA, value_head_dropout=0.0,
                          device=CPU)
    sft_logits = _logits(sft, False)

    # a run that started from no adapter: before = the base model, after = the trained adapter
    policy, _ = build_policy(ModelSection(name="asset:tiny-t5", adapter=str(trained)), LORA,
                             value_head_dropout=0.0, device=CPU, reference_adapter=None)
    torch.testing.assert_close(_logits(policy, True), base_logits)
    after = _logits(policy, False)
    assert (after - base_logits).abs().max() > 1e-2

    # a run that started from an adapter: before = that adapter
    policy, _ = build_policy(ModelSection(name="asset:tiny-t5", adapter=str(trained)), LORA,
                             value_head_dropout=0.0, device=CPU, reference_adapter=str(start))
    torch.testing.assert_close(_logits(policy, True), sft_logits)
    torch.testing.assert_close(_logits(policy, False), after)
