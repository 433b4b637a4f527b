#!/usr/bin/env python3
"""How much of the CPU the PPO update uses: model FLOP/s of one micro-batch against measured matmul FLOP/s.

For one update micro-batch (``B`` prompts of ``S`` tokens, responses of
``L`` tokens) this times rewardkit's own update pass (``teacher_forced`` on the
LoRA policy with values, a loss, ``backward``), counts its model FLOPs
analytically, and measures ``torch.matmul`` at the same shapes and dtype on
the same machine, in the same process::

    python bench/update_flops.py --size tiny                 # asset:tiny-t5, fp32 (the quickstart's)
    python bench/update_flops.py --size base --home /tmp/hf  # google/flan-t5-base stand-in, bf16 (detox.yaml's)
    python bench/update_flops.py --size base --home /tmp/hf --vocab-memory   # also the (B, L, 32128) peak

FLOPs (multiply-add = 2): forward = every matmul of encoder, decoder
(self- and cross-attention, gated FFN), LM head, LoRA and value head.
Backward through a *frozen* base computes activation gradients only (one
matmul per forward matmul, no weight gradients), plus the LoRA weight
gradients: about 2x the forward, not the 3x of full fine-tuning. The
matmul figure is the FLOP-weighted throughput of ``torch.matmul`` over the
forward's matmul shapes (projection, FFN and LM-head shapes; attention
score matmuls are batched per head and counted in the model FLOPs but not
in the reference). ``--vocab-memory`` measures the peak RSS of the update's
LM-head tail (logits, process_logits, logprobs, backward, entropy) as
rewardkit does it now and as a fused alternative would.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {  # model, dtype, default micro-batch shape
    "tiny": ("asset:tiny-t5", "float32", dict(B=4, S=160, L=32)),
    "base": ("google/flan-t5-base", "bfloat16", dict(B=4, S=160, L=250)),
}


def t5_flops(cfg, B: int, S: int, L: int, r: int, lora_modules=("q", "v")) -> dict:
    """Forward and backward matmul FLOPs of a T5 teacher-forced pass with LoRA, a value head and the LM head."""
    d, inner, ff, V = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff, cfg.vocab_size
    gated = 3 if getattr(cfg, "is_gated_act", False) else 2
    enc_tok, dec_tok = B * S, B * L
    fwd = {}
    fwd["encoder"] = cfg.num_layers * (enc_tok * 2 * (4 * d * inner + gated * d * ff)
                                       + 2 * 2 * B * S * S * inner)          # QK^T and AV
    fwd["decoder"] = cfg.num_decoder_layers * (
        dec_tok * 2 * (4 * d * inner + 2 * d * inner + gated * d * ff)    # self q,k,v,o; cross q,o; FFN
        + enc_tok * 2 * 2 * d * inner                                       # cross k,v over the encoder states
        + 2 * 2 * B * L * L * inner + 2 * 2 * B * L * S * inner)           # self and cross attention scores
    fwd["lm_head"] = dec_tok * 2 * d * V
    fwd["value_head"] = dec_tok * 2 * d
    per_proj = 2 * (d * r + r * inner)
    n_mod = len(lora_modules)
    lora = cfg.num_layers * enc_tok * n_mod * per_proj + cfg.num_decoder_layers * (
        dec_tok * n_mod * per_proj * (2 if "q" in lora_modules else 1) + enc_tok * per_proj * ("v" in lora_modules))
    fwd["lora"] = lora
    forward = sum(fwd.values())
    # activation gradients: one matmul per forward matmul; LoRA weight grads: one more per LoRA matmul
    backward = forward + lora
    return {"forward": forward, "backward": backward, "total": forward + backward, "forward_parts": fwd}


def matmul_reference(cfg, B, S, L, dtype, repeats: int = 5) -> dict:
    """FLOP-weighted torch.matmul throughput over the forward's projection, FFN and LM-head shapes."""
    import torch

    d, inner, ff, V = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff, cfg.vocab_size
    shapes = [(B * S, d, inner), (B * S, d, ff), (B * S, ff, d), (B * L, d, inner), (B * L, d, ff),
              (B * L, ff, d), (B * L, d, V)]
    total_flops = total_s = 0.0
    rows = []
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        s = statistics.median(times)
        rows.append({"shape": [m, k, n], "gflop_s": round(2 * m * k * n / s / 1e9, 2)})
        total_flops += 2 * m * k * n
        total_s += s
    return {"gflop_s": round(total_flops / total_s / 1e9, 2), "per_shape": rows}


def fake_rollout(B, S, L, vocab, seed=0):
    """A rollout of random tokens with every position real (the update's work does not depend on the values)."""
    import torch

    from rewardkit.ppo.rollout import Rollout

    g = torch.Generator().manual_seed(seed)
    return Rollout(query_ids=torch.randint(3, vocab, (B, S), generator=g), query_mask=torch.ones(B, S, dtype=torch.long),
                   response_ids=torch.randint(3, vocab, (B, L), generator=g), mask=torch.ones(B, L),
                   logprobs=torch.zeros(B, L), values=torch.zeros(B, L))


def time_update(policy, sampling, rollout, repeats: int) -> list[float]:
    """Seconds of forward (logprobs + values) + loss + backward of one micro-batch, as the update runs it."""
    from rewardkit.ppo.rollout import teacher_forced

    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        with policy.dropout():
            logprobs, values, _ = teacher_forced(policy, rollout, sampling, with_values=True)
        loss = -(logprobs * rollout.mask).mean() + 0.1 * (values.float() ** 2).mean()
        loss.backward()
        policy.zero_grad(set_to_none=True)
        if i:  # the first is a warm-up
            times.append(time.perf_counter() - t)
    return times


def _hwm_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def vocab_memory(variant: str, B, L, d, V, dtype, min_length=5) -> dict:
    """Peak RSS above the start of the LM-head tail of one update micro-batch, rewardkit's way or a fused way.

    ``current``: the logits (B, L, V) from the head, ``process_logits`` (fp32),
    ``logprobs_from_logits``, backward, then ``entropy_from_logits`` on the
    clamped logits, as ``rewardkit/algorithms/update.py`` does. ``fused``:
    ``cross_entropy`` for the logprobs and the entropy row by row under
    ``no_grad`` before backward, with the logits dropped before backward.
    """
    import torch
    import torch.nn.functional as F

    from rewardkit.ppo import core
    from rewardkit.ppo.rollout import Sampling, process_logits

    sampling = Sampling(eos_token_id=1, pad_token_id=0, decoder_start_token_id=0, min_length=min_length)
    weight = torch.randn(V, d, dtype=dtype) * d ** -0.5
    tokens = torch.randint(0, V, (B, L))
    mask = torch.ones(B, L)

    def whole():  # before 2026-12-02: gather + logsumexp, the entropy over the whole clamped tensor after backward
        hidden = torch.randn(B, L, d, dtype=dtype, requires_grad=True)
        logits = hidden @ weight.T
        logits = process_logits(logits, sampling, torch.arange(L))
        picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        logprobs = torch.where(mask.bool(), picked - torch.logsumexp(logits, dim=-1), 0.0)
        logprobs.sum().backward()
        with torch.no_grad():
            core.masked_mean(core.entropy_from_logits(logits.clamp(min=-1e9)), mask)

    def current():  # Updater.optimize now: fused logprobs, entropy row by row before backward, logits dropped
        hidden = torch.randn(B, L, d, dtype=dtype, requires_grad=True)
        logits = hidden @ weight.T
        logits = process_logits(logits, sampling, torch.arange(L))
        logprobs = torch.where(mask.bool(), core.logprobs_from_logits(logits, tokens), 0.0)
        with torch.no_grad():
            per_token = torch.cat([core.entropy_from_logits(row.clamp(min=-1e9)) for row in logits.split(1)])
        del logits
        logprobs.sum().backward()
        core.masked_mean(per_token, mask)

    def fused():
        hidden = torch.randn(B, L, d, dtype=dtype, requires_grad=True)
        logits = process_logits(hidden @ weight.T, sampling, torch.arange(L))
        # cross_entropy's backward is one (softmax - onehot) tensor; no gather/scatter or logsumexp copies
        logprobs = -F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").view(B, L)
        with torch.no_grad():  # entropy row by row, before backward, then the logits reference is dropped
            ent = torch.cat([torch.special.entr(torch.softmax(row, -1)).sum(-1) for row in logits.detach().split(1)])
        del logits
        logprobs.sum().backward()
        core.masked_mean(ent, mask)

    fn = {"whole": whole, "current": current, "fused": fused}[variant]
    if not _hwm_reset():
        return {"error": "cannot reset VmHWM (/proc/self/clear_refs)"}
    base = _rss_kib("VmRSS")
    fn()
    return {"peak_mib": round((_rss_kib("VmHWM") - base) / 1024, 1)}


def vocab_memory_all(B, L, d, V, dtype_name: str, threads: int) -> dict:
    """Each variant of :func:`vocab_memory` in a fresh process (freed memory kept by malloc would hide a peak)."""
    import subprocess

    out = {"shape": [B, L, V], "dtype": dtype_name, "one_fp32_BLV_mib": round(B * L * V * 4 / 2**20, 1)}
    for variant in ("whole", "current", "fused"):
        cmd = [sys.executable, __file__, "--vocab-only", variant, "-B", str(B), "-L", str(L), "--dim", str(d),
               "--vocab", str(V), "--dtype", dtype_name, "--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[f"{variant}_peak_mib"] = json.loads(proc.stdout.splitlines()[-1])["peak_mib"]
    return out


def main(argv=None) -> int:
    """Parse arguments, measure, print and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--home", type=Path, help="HF_HOME of the rehearsal cache (for --size base)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", "-B", type=int)
    ap.add_argument("--prompt-len", "-S", type=int)
    ap.add_argument("--response-len", "-L", type=int)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--vocab-memory", action="store_true")
    ap.add_argument("--out", help="write the result JSON here")
    ap.add_argument("--vocab-only", choices=["whole", "current", "fused"], help=argparse.SUPPRESS)
    ap.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.vocab_only:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(vocab_memory(args.vocab_only, args.batch, args.response_len, args.dim, args.vocab,
                                      getattr(torch, args.dtype))))
        return 0
    if args.home:
        os.environ["HF_HOME"] = str(args.home.resolve())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from rewardkit.policy import build_policy
    from rewardkit.ppo.rollout import sampling_for
    from rewardkit.recipe.schema import GenerationSection, LoraSection, ModelSection

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    name, dtype_name, shape = SIZES[args.size]
    B = args.batch or shape["B"]
    S = args.prompt_len or shape["S"]
    L = args.response_len or shape["L"]
    lora = LoraSection(r=32, alpha=32, dropout=0.05, target_modules=["q", "v"])
    policy, tokenizer = build_policy(ModelSection(name=name, dtype=dtype_name), lora, value_head_dropout=0.0,
                                     device=torch.device("cpu"))
    cfg = policy.config
    sampling = sampling_for(GenerationSection(min_length=5, top_k=0, top_p=1.0), tokenizer, cfg)
    dtype = next(policy.model.parameters()).dtype
    rollout = fake_rollout(B, S, L, len(tokenizer))
    time_update(policy, sampling, rollout, 0)  # warm-up
    flops = t5_flops(cfg, B, S, L, lora.r)
    # Each update repeat is followed by a matmul measurement, so that on a shared
    # machine both see about the same contention; the per-pair ratio is the figure.
    times, refs, pairs = [], [], []
    for _ in range(args.repeats):
        times.extend(time_update(policy, sampling, rollout, 1)[-1:])
        refs.append(matmul_reference(cfg, B, S, L, dtype, repeats=2))
        pairs.append(flops["total"] / times[-1] / 1e9 / refs[-1]["gflop_s"])
    seconds = statistics.median(times)
    ref = max(refs, key=lambda r: r["gflop_s"])
    result = {
        "size": args.size, "model": name, "dtype": str(dtype).split(".")[-1], "threads": args.threads,
        "micro_batch": {"B": B, "S": S, "L": L}, "update_seconds": [round(t, 3) for t in times],
        "model_gflop": round(flops["total"] / 1e9, 2), "forward_gflop": round(flops["forward"] / 1e9, 2),
        "update_gflop_s": round(flops["total"] / seconds / 1e9, 2), "matmul_gflop_s": ref["gflop_s"],
        "matmul_gflop_s_median": statistics.median(r["gflop_s"] for r in refs),
        "fraction_of_matmul": round(flops["total"] / seconds / 1e9 / statistics.median(r["gflop_s"] for r in refs), 3),
        # on a shared machine the fastest repeat is the one least disturbed by other jobs
        "update_gflop_s_best": round(flops["total"] / min(times) / 1e9, 2),
        "fraction_of_matmul_best": round(flops["total"] / min(times) / 1e9 / ref["gflop_s"], 3),  # best / best
        "matmul_gflop_s_each": [r["gflop_s"] for r in refs],
        "fraction_of_matmul_pairs": [round(x, 3) for x in pairs],
        "fraction_of_matmul_paired_median": round(statistics.median(pairs), 3),
        "matmul_per_shape": ref["per_shape"],
        "forward_parts_gflop": {k: round(v / 1e9, 3) for k, v in flops["forward_parts"].items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "load_avg_1min": round(os.getloadavg()[0], 2)},
    }
    if args.vocab_memory:
        result["vocab_memory"] = vocab_memory_all(B, 400, cfg.d_model, cfg.vocab_size, str(dtype).split(".")[-1],
                                                  args.threads)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
