#!/usr/bin/env python3
"""One rewardkit PPO run on the peer benchmark's work; the last stdout line is a result JSON.

The work is exactly the peer's (``../shared/bench/peer/``): its T5 (tiny,
or flan-t5-small/base shapes) and tiny RoBERTa reward, loaded with
``from_pretrained`` from its tiny dir; its batches (``batches_seed0.json``,
step 0 = warm-up); 32 new tokens per prompt (EOS suppressed for small/base so
exactly 32 come out); the 'nothate' logit of ``query + response``; LoRA r=32
alpha=32 dropout 0.05 on q,v; lr 1.41e-5; batch 16, mini-batch 4, one epoch;
fp32; 2 threads.

The step is rewardkit's own, phase for phase as ``rewardkit.runner`` runs it:
``sample`` (rollout with logprobs and values), decode + the composed
``toxicity`` reward, ``PPOTrainer.step``. Usage::

    python bench/rk_ppo.py 10 --size tiny [--batch-size 16] [--max-new-tokens 32] [--tiny-dir DIR]

Run it in a fresh process per measurement: the peak RSS (``ru_maxrss``) is
the whole process's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
PEER_DIR = os.path.join(HERE, "..", "..", "shared", "bench", "peer")
DEFAULT_TINY_DIR = os.environ.get("TINY_DIR") or os.path.join(
    os.environ.get("PEERBENCH_DIR") or os.path.join(os.environ.get("TMPDIR") or "/tmp", "peerbench"), "tiny")
T5_SUBDIR = {"tiny": "t5", "small": "t5-small", "base": "t5-base"}


def rss_mib() -> float:
    """Current resident set size (VmRSS) of this process, MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss``), MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("steps", nargs="?", type=int, default=10, help="timed PPO steps (after 1 warm-up)")
    ap.add_argument("--size", choices=sorted(T5_SUBDIR), default="tiny")
    ap.add_argument("--tiny-dir", default=DEFAULT_TINY_DIR, help="the peer's make_tiny.py output dir")
    ap.add_argument("--batches", default=os.path.join(PEER_DIR, "batches_seed0.json"))
    ap.add_argument("--batch-size", type=int, default=16,
                    help="prompts per step; the peer's batch lists are concatenated and re-cut to this size")
    ap.add_argument("--mini-batch-size", type=int, default=4)
    ap.add_argument("--micro-batch-size", type=int, default=None,
                    help="rows per forward/backward piece inside a mini-batch (default: the trainer's)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--force-len", choices=["auto", "yes", "no"], default="auto",
                    help="block EOS so every response has max-new-tokens tokens: auto = yes for small/base "
                         "(as the peer does), no for tiny (min_length 5, as the peer)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: run on the GPU (the peer is CPU-only); also reports peak GPU memory")
    ap.add_argument("--mixed-precision", choices=["no", "bf16"], default="no",
                    help="accelerate's mixed precision (bf16 autocast over fp32 weights)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablate", action="append", default=[], choices=["fast", "chunk", "draw"],
                    help="turn one optimisation off, to measure what it buys: fast = the lean T5 passes "
                         "(transformers' forward instead), chunk = length-sorted encoder groups in sampling, "
                         "draw = inverse-CDF sampling (torch.multinomial instead); repeatable")
    ap.add_argument("--overhead", action="store_true",
                    help="also time the model's forward/backward inside the update, to report framework overhead")
    return ap.parse_args(argv)


def step_batches(path: str, batch_size: int, n_steps: int) -> list[list[int]]:
    """The prompt ids of each step: the peer's lists, flattened, cycled and cut into ``batch_size``."""
    with open(path) as f:
        flat = [i for step in json.load(f)["steps"] for i in step]
    need = batch_size * n_steps
    ids = (flat * (need // len(flat) + 1))[:need]
    return [ids[k * batch_size:(k + 1) * batch_size] for k in range(n_steps)]


class ModelClock:
    """Seconds spent inside the policy's forward and in ``backward``, while :attr:`on`.

    Forward time comes from hooks on the policy module (the update's
    teacher-forced passes call it); backward time from wrapping the
    accelerator's ``backward``. What is left of the update phase is the
    framework's own work (loss math, GAE, optimizer, bookkeeping).
    """

    def __init__(self, policy, accelerator):
        self.on = False
        self.forward_s = 0.0
        self.backward_s = 0.0
        self._t = 0.0
        policy.register_forward_pre_hook(self._pre)
        policy.register_forward_hook(self._post)
        inner = accelerator.backward

        def backward(loss, **kw):
            t = time.perf_counter()
            inner(loss, **kw)
            if self.on:
                self.backward_s += time.perf_counter() - t

        accelerator.backward = backward

    def _pre(self, module, args):
        self._t = time.perf_counter()

    def _post(self, module, args, out):
        if self.on:
            self.forward_s += time.perf_counter() - self._t

    def reset(self):
        self.forward_s = self.backward_s = 0.0


def ablate(names: list[str]) -> None:
    """Switch the named optimisations off (for the "what each change bought" table)."""
    if not names:
        return
    import torch

    from rewardkit.ppo import rollout, t5fast

    if "fast" in names:
        t5fast.supports = lambda model: False
    if "chunk" in names:
        rollout.CPU_ENCODER_CHUNK = None
    if "draw" in names:
        rollout.draw = lambda logprobs, generator=None: torch.multinomial(logprobs.exp(), 1, generator=generator)[:, 0]


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    from accelerate import Accelerator

    from rewardkit.compose import ComposedReward
    from rewardkit.optim import build_optimizer  # the optimizer `rewardkit run` builds
    from rewardkit.plugins import load_registry
    from rewardkit.policy import build_policy
    from rewardkit.ppo.kl import make_kl_controller
    from rewardkit.ppo.rollout import Sampling, sample
    from rewardkit.ppo.trainer import PPOTrainer
    from rewardkit.recipe.schema import LoraSection, ModelSection, PPOSection, RewardSpec
    from rewardkit.reward import Batch

    ablate(args.ablate)
    torch.manual_seed(args.seed)
    t5_dir = os.path.join(args.tiny_dir, T5_SUBDIR[args.size])
    force_len = args.force_len == "yes" or (args.force_len == "auto" and args.size != "tiny")
    mem = {}

    acc = Accelerator(mixed_precision=args.mixed_precision, cpu=args.device == "cpu")
    policy, tokenizer = build_policy(ModelSection(name=t5_dir, dtype="float32"),
                                     LoraSection(r=32, alpha=32, dropout=0.05, target_modules=["q", "v"]),
                                     value_head_dropout=0.1, device=acc.device)
    mem["rss_after_policy_mib"] = rss_mib()
    with open(os.path.join(args.tiny_dir, "prompts.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    # the peer tokenizes each prompt (EOS appended) and scores decode(ids) + response: do exactly the same
    prompt_ids = [tokenizer.encode(r["prompt"]) for r in rows]
    queries = [tokenizer.decode(ids) for ids in prompt_ids]

    spec = RewardSpec(name="toxicity", params={"model": os.path.join(args.tiny_dir, "reward"), "label": "nothate",
                                               "output": "logit", "text": "prompt+completion", "batch_size": 16})
    reward = ComposedReward.from_specs([spec], load_registry(), device=str(acc.device))

    ppo = PPOSection(learning_rate=1.41e-5, batch_size=args.batch_size, mini_batch_size=args.mini_batch_size,
                     ppo_epochs=1, max_ppo_steps=args.steps + 1)
    optimizer = build_optimizer(policy.trainable_parameters(), ppo.learning_rate, 0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    wrapped, optimizer, scheduler = acc.prepare(policy, optimizer, scheduler)
    cfg = policy.config
    sampling = Sampling(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                        decoder_start_token_id=cfg.decoder_start_token_id,
                        # min_length counts the decoder start token: 1 + N blocks EOS for N response tokens
                        min_length=args.max_new_tokens + 1 if force_len else 5)
    extra = {} if args.micro_batch_size is None else {"micro_batch_size": args.micro_batch_size}
    trainer = PPOTrainer(wrapped, policy, optimizer, scheduler, acc, ppo, sampling,
                         make_kl_controller(ppo.adap_kl_ctrl, ppo.init_kl_coef, ppo.target, ppo.horizon), **extra)
    clock = ModelClock(policy, acc) if args.overhead else None

    def pad(seqs):
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        return ids, mask

    def sync():
        if acc.device.type == "cuda":
            torch.cuda.synchronize()

    setup_s = time.perf_counter() - t_start
    mem["rss_after_setup_mib"] = rss_mib()
    records = []
    for step, idx in enumerate(step_batches(args.batches, args.batch_size, args.steps + 1)):
        query_ids, query_mask = (t.to(acc.device) for t in pad([prompt_ids[i] for i in idx]))
        limits = torch.full((len(idx),), args.max_new_tokens, dtype=torch.long)
        if clock:
            clock.reset()
        sync()
        t0 = time.perf_counter()
        with acc.autocast():
            rollout = sample(policy, query_ids, query_mask, limits, sampling)
        sync()
        t1 = time.perf_counter()
        if step == 0:
            mem["peak_rss_after_warmup_generate_mib"] = peak_rss_mib()
        completions = tokenizer.batch_decode(rollout.response_ids, skip_special_tokens=True)
        scores = reward(Batch([queries[i] for i in idx], completions))
        total = torch.tensor(scores.total, dtype=torch.float32, device=acc.device)
        t2 = time.perf_counter()
        if clock:
            clock.on = True
        stats = trainer.step(rollout, total)
        sync()
        t3 = time.perf_counter()
        if clock:
            clock.on = False
        if step == 0:  # where the peak comes from (ru_maxrss only grows): after each phase of the warm-up step
            mem["peak_rss_after_warmup_update_mib"] = peak_rss_mib()
        rec = {"step": step, "warmup": step == 0, "step_s": t3 - t0, "generate_s": t1 - t0, "reward_s": t2 - t1,
               "ppo_update_s": t3 - t2, "reward_mean": float(total.mean()), "kl": stats["kl"],
               "resp_tokens_min": int(rollout.lengths.min()), "resp_tokens_mean": float(rollout.lengths.float().mean()),
               "generate_tokens_per_s": float(rollout.lengths.sum()) / (t1 - t0)}
        if clock:
            rec["update_forward_s"] = clock.forward_s
            rec["update_backward_s"] = clock.backward_s
            rec["overhead_s"] = rec["ppo_update_s"] - clock.forward_s - clock.backward_s
        records.append(rec)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}),
              file=sys.stderr, flush=True)

    timed = [r for r in records if not r["warmup"]]

    def med(key):
        return round(statistics.median(r[key] for r in timed), 4)

    result = {
        "bench": "rewardkit_ppo_seq2seq_cpu", "size": args.size, "batch_size": args.batch_size,
        "mini_batch_size": args.mini_batch_size, "max_new_tokens": args.max_new_tokens, "force_len": force_len,
        "ablated": args.ablate, "steps_timed": len(timed), "median_step_s": med("step_s"), "median_generate_s": med("generate_s"),
        "median_reward_s": med("reward_s"), "median_ppo_update_s": med("ppo_update_s"),
        "warmup_step_s": round(records[0]["step_s"], 4), "setup_s": round(setup_s, 3),
        "peak_rss_mib": peak_rss_mib(), "memory": mem, "torch_threads": torch.get_num_threads(),
        "device": str(acc.device), "mixed_precision": args.mixed_precision,
        "median_generate_tokens_per_s": round(statistics.median(r["generate_tokens_per_s"] for r in timed), 1),
        "resp_tokens_min": min(r["resp_tokens_min"] for r in timed),
        "reward_mean_first_last": [round(timed[0]["reward_mean"], 4), round(timed[-1]["reward_mean"], 4)],
        "kl_first_last": [round(timed[0]["kl"], 5), round(timed[-1]["kl"], 5)],
    }
    if acc.device.type == "cuda":
        result["peak_gpu_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if clock:
        for key in ("update_forward_s", "update_backward_s", "overhead_s"):
            result[f"median_{key}"] = med(key)
        result["overhead_frac_of_step"] = round(
            statistics.median(r["overhead_s"] / r["step_s"] for r in timed), 4)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
