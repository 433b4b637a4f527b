"""``rewardkit run``: the training loop, top to bottom, for PPO, GRPO and RLOO.

Phases of a step: rollout (sample with the KV cache, ``group_size``
completions per prompt for GRPO/RLOO; logprobs, and PPO's values, come from
the same pass), score (the composed reward, outside the trainer), update (the
algorithm's trainer: :class:`~rewardkit.ppo.trainer.PPOTrainer` or
:class:`~rewardkit.algorithms.grpo.GroupTrainer` turns scores into advantages
and a loss), log, checkpoint. accelerate places the model, handles mixed
precision and spreads the work over processes (``accelerate launch -m
rewardkit run ...``): each process samples its own prompts and gradients
are averaged.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rewardkit import checkpoint, rundir
from rewardkit.errors import NonFiniteError, RewardError, RewardkitError
from rewardkit.optim import build_optimizer
from rewardkit.reward import Batch
from rewardkit.rundir import JsonlWriter, expand_dir, write_header

#: Completions with fewer words than this count as "short" for the collapse warning.
SHORT_WORDS = 2


class RunAborted(RewardkitError):
    """A second Ctrl-C (or SIGTERM) stopped the run mid-step; the message says what was kept."""

    exit_code = 130


class RunInterrupted(RewardkitError):
    """SIGINT/SIGTERM stopped the run at a safe point, after a checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


@dataclass
class DataOrder:
    """Which prompts each step uses: a fresh seeded permutation per epoch.

    Stateless apart from ``(epoch, offset)``, so a checkpoint stores two ints
    and a resumed run draws exactly the prompts an uninterrupted one would.
    """

    size: int
    seed: int
    epoch: int = 0
    offset: int = 0
    _perm: list[int] = field(default_factory=list, repr=False)

    def _permutation(self) -> list[int]:
        if not self._perm:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            self._perm = torch.randperm(self.size, generator=g).tolist()
        return self._perm

    def take(self, n: int) -> list[int]:
        """The next ``n`` indices, wrapping into a new epoch when needed."""
        out = []
        while len(out) < n:
            perm = self._permutation()
            k = min(n - len(out), self.size - self.offset)
            out += perm[self.offset:self.offset + k]
            self.offset += k
            if self.offset >= self.size:
                self.epoch, self.offset, self._perm = self.epoch + 1, 0, []
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.offset, self._perm = state["epoch"], state["offset"], []


class _Signals:
    """Turns the first SIGINT/SIGTERM into a flag; the loop stops at the next safe point."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test runners)
                pass
        return self

    def _handle(self, signum, frame):
        if self.received is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        # said at once: a slow reward may keep the step going for a while
        print(f"\n{name}: stopping after this step and writing a checkpoint ({name} again to abort now)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _scheduler(optimizer, kind: str, total_steps: int):
    def factor(step: int) -> float:
        progress = min(step / max(total_steps, 1), 1.0)
        if kind == "linear":
            return 1.0 - progress
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def pad_prompts(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token-id lists into ``(ids, attention_mask)`` tensors of shape ``(N, longest)``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


def group_config(recipe):
    """The :class:`~rewardkit.algorithms.grpo.GroupConfig` of a GRPO or RLOO recipe."""
    from rewardkit.algorithms.grpo import GroupConfig

    gen, g, ppo = recipe.generation, recipe.grpo, recipe.ppo
    longest = gen.max_new_tokens if isinstance(gen.max_new_tokens, int) else gen.max_new_tokens.max
    return GroupConfig(algorithm=recipe.algorithm, group_size=g.group_size, scale_rewards=g.scale_rewards,
                       beta=g.beta, kl=g.kl, loss_type=g.loss_type, epsilon_low=g.epsilon_low,
                       epsilon_high=g.epsilon_high, num_iterations=g.num_iterations,
                       mini_batch_size=ppo.mini_batch_size, max_grad_norm=ppo.max_grad_norm, max_length=longest)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _decided_by_main(state, decide, error_cls):
    """Run ``decide()`` on the main process only and give every process its result, or its error.

    :param decide: returns a picklable value, or raises RewardkitError.
    :param error_cls: the error every process raises with the main process's message.
    """
    from accelerate.utils import broadcast_object_list

    holder = [None, None]
    if state.is_main_process:
        try:
            holder[0] = decide()
        except RewardkitError as exc:
            holder[1] = str(exc)
    if state.num_processes > 1:
        broadcast_object_list(holder)
    if holder[1] is not None:
        raise error_cls(holder[1])
    return holder[0]


def _settle_run_dir(state, recipe, recipe_path: Path, run_dir, resume: bool):
    """The run directory every process writes, and the main process's lock on it (``None`` elsewhere).

    A new run claims a fresh directory (:func:`rewardkit.rundir.claim`); a
    resume locks the one it continues. The main process decides and the others
    learn the outcome from it, a path or the error, so all stop together.
    """
    locks = []

    def decide() -> str:
        if resume:
            path = Path(run_dir)
        else:
            explicit = run_dir is not None
            path = rundir.claim(Path(run_dir) if explicit else expand_dir(recipe.output.dir, recipe_path),
                                explicit=explicit)
        locks.append(rundir.lock(path).__enter__())
        return str(path)

    path = _decided_by_main(state, decide, rundir.RunDirError)
    return Path(path), (locks[0] if locks else None)


class Runner:
    """Everything one training run needs (PPO, GRPO or RLOO, as ``algorithm`` says), built from a loaded recipe.

    :param loaded: a :class:`rewardkit.recipe.LoadedRecipe`.
    :param run_dir: where to write; ``None`` expands the recipe's ``output.dir``.
    :param resume: continue from the newest checkpoint in ``run_dir``.
    """

    def __init__(self, loaded, *, run_dir: str | Path | None = None, resume: bool = False, progress: bool = True):
        from accelerate import PartialState

        self.loaded, recipe = loaded, loaded.recipe
        self._fast_path_checked = False  # t5fast.check_fast_path runs on the first batch this process samples
        self.recipe, self.progress = recipe, progress
        trackers = list(recipe.output.trackers)
        # Several processes but no GPU: accelerate only picks its gloo (MULTI_CPU) path when told cpu=True.
        multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        from accelerate.state import AcceleratorState

        self._lock = None
        # A second run in one Python process (a notebook, the tests) may ask for another precision; accelerate
        # keeps one global state and would refuse. The process group (PartialState) is kept.
        AcceleratorState._reset_state()
        # the run directory is settled before any model loads: claimed (a new run) or locked (a resume)
        self.run_dir, self._lock = _settle_run_dir(PartialState(cpu=multi_cpu), recipe, Path(loaded.path),
                                                   run_dir, resume)
        try:
            self._build(loaded, recipe, trackers, multi_cpu, resume)
        except BaseException:
            self.close()
            if not resume and PartialState().is_main_process:
                rundir.abandon(self.run_dir)  # nothing was written: the name is free for the next try
            raise

    def _build(self, loaded, recipe, trackers, multi_cpu, resume):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from rewardkit import data as data_mod
        from rewardkit.algorithms.grpo import GroupTrainer
        from rewardkit.compose import ComposedReward
        from rewardkit.policy import build_policy
        from rewardkit.ppo.kl import make_kl_controller
        from rewardkit.ppo.rollout import sampling_for
        from rewardkit.ppo.trainer import PPOConfig, PPOTrainer

        # trackers that write files (tensorboard) need a directory when the Accelerator is made
        self.acc = Accelerator(mixed_precision=recipe.mixed_precision, log_with=trackers or None,
                               cpu=multi_cpu, project_dir=str(self.run_dir))
        acc = self.acc

        set_seed(recipe.seed)  # identical initial weights on every process
        critic = recipe.algorithm == "ppo"  # GRPO and RLOO have no value head at all
        self.policy, self.tokenizer = build_policy(
            recipe.model, recipe.lora, value_head_dropout=recipe.ppo.value_head_dropout if critic else None,
            device=acc.device, base_dir=loaded.base_dir)
        self.reward = ComposedReward.from_specs(recipe.rewards, loaded.registry, device=str(acc.device))
        self.train_set, self.test_set = data_mod.prepare(recipe.data, self.tokenizer, seed=recipe.seed,
                                                         base_dir=loaded.base_dir,
                                                         needs_references=self.reward.needs_references)

        ppo = recipe.ppo
        optimizer = build_optimizer(self.policy.trainable_parameters(), ppo.learning_rate, ppo.weight_decay)
        passes = ppo.ppo_epochs if critic else recipe.grpo.num_iterations
        updates = ppo.max_ppo_steps * passes * math.ceil(ppo.batch_size / ppo.mini_batch_size)
        # The scheduler stays out of acc.prepare: accelerate would step it once per process per call, so with
        # N processes the schedule would end after 1/N of the run. The trainer steps it once per update.
        self.scheduler = _scheduler(optimizer, ppo.lr_scheduler, updates)
        self.wrapped, self.optimizer = acc.prepare(self.policy, optimizer)
        set_seed(recipe.seed, device_specific=True)  # ...but each process samples its own tokens
        self.sampling = sampling_for(recipe.generation, self.tokenizer, self.policy.config)
        #: completions per prompt: 1 for PPO, grpo.group_size for GRPO/RLOO
        self.group_size = 1 if critic else recipe.grpo.group_size
        if critic:
            self.kl_ctl = make_kl_controller(ppo.adap_kl_ctrl, ppo.init_kl_coef, ppo.target, ppo.horizon)
            self.trainer = PPOTrainer(self.wrapped, self.policy, self.optimizer, self.scheduler, acc,
                                      PPOConfig.of(ppo), self.sampling, self.kl_ctl)
        else:
            self.kl_ctl = None  # a fixed grpo.beta
            self.trainer = GroupTrainer(self.wrapped, self.policy, self.optimizer, self.scheduler, acc,
                                        group_config(recipe), self.sampling)
        self.order = DataOrder(len(self.train_set), recipe.seed)
        self.held_out = None  # output.eval_every: the recipe's judges on a few test prompts, now and then
        if recipe.output.eval_every and acc.is_main_process:
            from rewardkit.evaluate.live import HeldOutCheck

            self.held_out = HeldOutCheck(loaded, self.test_set, self.tokenizer, self.policy.config,
                                         device=str(acc.device))
        self.metrics = JsonlWriter(self.run_dir / "metrics.jsonl")
        self.samples = JsonlWriter(self.run_dir / "samples.jsonl")
        self.start_step = 0
        if resume:
            self._resume()
        elif acc.is_main_process:
            self._write_header()
        acc.wait_for_everyone()
        if trackers:
            acc.init_trackers("trackers", config={"recipe": str(loaded.path)})  # RUN_DIR/trackers/

    # -- set-up helpers -------------------------------------------------------------------------------------------
    def _write_header(self):
        plugins = [{"reward": c, "plugin": self.loaded.registry.get(c).plugin,
                    "version": self.loaded.registry.get(c).version} for c in self.reward.names]
        write_header(self.run_dir, recipe=self.recipe, source_text=self.loaded.source_text, plugins=plugins,
                     extra={"recipe_dir": str(Path(self.loaded.base_dir).resolve()),
                            "world_size": self.acc.num_processes, "device": str(self.acc.device),
                            "mixed_precision": self.acc.mixed_precision,
                            "train_prompts": len(self.train_set), "test_prompts": len(self.test_set),
                            "truncated_prompts": self.train_set.truncated + self.test_set.truncated})
        if self.train_set.truncated + self.test_set.truncated:
            print(f"note: {self.train_set.truncated + self.test_set.truncated} prompts were longer than "
                  f"data.max_prompt_tokens={self.recipe.data.max_prompt_tokens} and were truncated")

    def _resume(self):
        acc = self.acc

        def decide() -> str:
            removed = checkpoint.remove_stale_temporaries(self.run_dir)
            if removed:
                _stderr(f"note: removed {len(removed)} unfinished checkpoint folder(s) a stopped run left "
                        f"({', '.join(p.name for p in removed)})")
            return str(checkpoint.newest_intact(self.run_dir, note=_stderr).path)

        # the main process picks the newest intact checkpoint (and says which were damaged); every process loads it
        path = Path(_decided_by_main(acc, decide, checkpoint.CheckpointError))
        try:
            loaded = checkpoint.read(path)
        except ValueError as exc:
            raise checkpoint.CheckpointError(f"--resume: checkpoint {path} cannot be read on process "
                                             f"{acc.process_index}: {exc}") from None
        state, rng, step = loaded.state, loaded.rng, loaded.step
        try:
            checkpoint.apply_weights(loaded, self.policy)
        except checkpoint.CheckpointError as exc:
            raise checkpoint.CheckpointError(f"--resume: {exc}. The resumed run's recipe is "
                                             f"{self.run_dir / 'recipe.yaml'}; set that field back") from None
        if len(rng) != acc.num_processes:
            raise RewardkitError(f"--resume: {path} was written by {len(rng)} processes, this run has "
                                 f"{acc.num_processes}")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.kl_ctl is not None:
                self.kl_ctl.load_state_dict(state["kl"])
            self.reward.load_state_dict(state["reward"])
            self.order.load_state_dict(state["data"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise checkpoint.CheckpointError(
                f"--resume: the trainer state in {path / 'trainer_state.pt'} does not fit this run's recipe "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); was {self.run_dir / 'recipe.yaml'} "
                f"edited (ppo, rewards)?") from None
        checkpoint.set_rng_state(rng[acc.process_index])
        self.start_step = step + 1
        if acc.is_main_process:
            self.metrics.truncate_after(step)
            self.samples.truncate_after(step)
            print(f"resuming {self.run_dir} after step {step} ({path})")

    def _save(self, step: int, rng: dict) -> Path:
        """Checkpoint the state as it is now, with ``rng`` as the state to continue from."""
        from accelerate.utils import gather_object

        rngs = gather_object([rng]) if self.acc.num_processes > 1 else [rng]
        path = None
        if self.acc.is_main_process:
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "kl": self.kl_ctl.state_dict() if self.kl_ctl is not None else {},
                     "reward": self.reward.state_dict(),
                     "data": self.order.state_dict()}
            path = checkpoint.save(self.run_dir, step, policy=self.policy, state=state, rng_by_rank=rngs)
        self.acc.wait_for_everyone()
        return path or checkpoint.step_dir(self.run_dir, step)

    # -- the loop ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the run directory (the lock a resume or a second run would wait on)."""
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def run(self) -> Path:
        """Train to ``ppo.max_ppo_steps``; returns the run directory."""
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> Path:
        from tqdm.auto import tqdm

        ppo = self.recipe.ppo
        bar = tqdm(total=ppo.max_ppo_steps, initial=self.start_step, desc="PPO", unit="step",
                   disable=not (self.progress and self.acc.is_main_process), dynamic_ncols=True)
        last_ckpt = self.start_step - 1
        with _Signals() as signals:
            try:
                last_ckpt = self._loop(signals, bar, last_ckpt)
            except KeyboardInterrupt:
                bar.close()
                raise RunAborted(self._kept("aborted")) from None
        bar.close()
        if last_ckpt != ppo.max_ppo_steps - 1:
            self._save(ppo.max_ppo_steps - 1, checkpoint.rng_state())
        self._save_final()
        self.acc.end_training()
        return self.run_dir

    def _kept(self, what: str) -> str:
        """What an aborted run leaves: the newest checkpoint and the last logged step."""
        kept = checkpoint.latest(self.run_dir)
        logged = self.metrics.path.exists() and rundir.read_jsonl(self.metrics.path, note=lambda m: None)
        last = f"metrics.jsonl up to step {logged[-1]['step']}" if logged else "no logged step"
        where = (f"the newest checkpoint is {kept}; resume with: rewardkit run --resume {self.run_dir}" if kept else
                 "no checkpoint was written yet (set output.checkpoint_every to keep some)")
        return f"{what} during a step; kept: {last}; {where}"

    def _loop(self, signals, bar, last_ckpt: int) -> int:
        """The steps, from ``start_step``; returns the last checkpointed step.

        Each step is rollout, score, update (advantages and loss, in the
        trainer), log (:meth:`_step`), then a checkpoint when one is due or a
        signal asked to stop. What a failing step keeps is :meth:`_on_failure`'s.
        """
        ppo, out = self.recipe.ppo, self.recipe.output
        for step in range(self.start_step, ppo.max_ppo_steps):
            with self._on_failure(step, last_ckpt):
                record = self._step(step)
            bar.update(1)
            bar.set_postfix(reward=f"{record['reward/total_mean']:.3f}", kl=f"{record['kl']:.3f}",
                            s_step=f"{record['time/step_s']:.2f}")
            stop = signals.received
            if stop is not None or (out.checkpoint_every and (step + 1) % out.checkpoint_every == 0):
                self._save(step, checkpoint.rng_state())
                last_ckpt = step
            if stop is not None:
                bar.close()
                raise RunInterrupted(
                    f"stopped by {signal.Signals(stop).name} after step {step}; checkpoint written.\n"
                    f"Resume with: rewardkit run --resume {self.run_dir}", stop)
        return last_ckpt

    @contextlib.contextmanager
    def _on_failure(self, step: int, last_ckpt: int):
        """A reward failure or a non-finite value in ``step``: keep what can be kept, re-raise naming the step.

        The state from before the step is checkpointed when the optimizer has
        not stepped in it yet (a reward failure, a non-finite value found before
        the update); otherwise the newest checkpoint is what is kept.
        """
        rng_before = checkpoint.rng_state()
        data_before = self.order.state_dict()
        try:
            yield
        except RewardError as exc:
            hint = self._keep_state_before(step, last_ckpt, rng_before, data_before)
            raise RewardError(exc.reward, f"step {step}: {exc.detail}{hint}",
                              plugin=exc.plugin, index=exc.index) from exc
        except NonFiniteError as exc:
            if exc.weights_changed:  # earlier mini-batches moved the weights: the state before is gone
                kept = checkpoint.latest(self.run_dir)
                hint = (f"; the newest checkpoint, {kept}, is kept" if kept else
                        "; no checkpoint was written before it (set output.checkpoint_every)")
            else:
                hint = self._keep_state_before(step, last_ckpt, rng_before, data_before)
            raise NonFiniteError(exc.quantity, f"step {step}, {exc.detail}; the optimizer did not step "
                                               f"on it{hint}") from exc

    def _keep_state_before(self, step: int, last_ckpt: int, rng_before: dict, data_before: dict) -> str:
        """Checkpoint the state after ``step - 1`` (weights untouched by ``step``); a hint saying where."""
        self.order.load_state_dict(data_before)
        kept = self._save(step - 1, rng_before) if step - 1 > last_ckpt else checkpoint.latest(self.run_dir)
        return f"; state after step {step - 1} is saved in {kept}" if kept else ""

    def _score(self, batch: Batch):
        """The composed reward of this process's batch, normalised over every process's scores.

        A reward that fails on one process ends every process with that
        error: the processes agree on the outcome before any of them moves on
        to the update, whose collectives would otherwise wait forever.
        """
        from accelerate.utils import gather_object

        acc = self.acc
        try:
            raw, failure = self.reward.score_components(batch), None
        except RewardError as exc:
            raw, failure = None, exc
        if acc.num_processes == 1:
            if failure is not None:
                raise failure
        else:
            mine = None if failure is None else (failure.reward, failure.detail, failure.plugin, failure.index)
            failures = gather_object([mine])
            if failure is not None:
                raise failure
            first = next(((rank, f) for rank, f in enumerate(failures) if f is not None), None)
            if first is not None:
                rank, (reward, detail, plugin, index) = first
                raise RewardError(reward, f"on process {rank}: {detail}", plugin=plugin, index=index)

        def gather(values: list[float]) -> list[float]:
            t = torch.tensor(values, dtype=torch.float64, device=acc.device)
            return acc.gather(t).tolist()

        return self.reward.combine(raw, gather=gather if acc.num_processes > 1 else None, check=False)

    def _step(self, step: int) -> dict:
        acc, ppo = self.acc, self.recipe.ppo
        t0 = time.perf_counter()
        # -- rollout: batch_size completions per process, group_size of each prompt (a group never spans processes)
        g = self.group_size
        per_rank = ppo.batch_size // g
        idx_all = self.order.take(per_rank * acc.num_processes)
        prompt_idx = idx_all[acc.process_index * per_rank:(acc.process_index + 1) * per_rank]
        query_ids, query_mask = pad_prompts([self.train_set.input_ids[i] for i in prompt_idx],
                                            self.tokenizer.pad_token_id, acc.device)
        # one token budget per prompt, shared by its group, so the group's rewards are comparable
        limits = self._max_new_tokens(len(prompt_idx)).repeat_interleave(g)
        idx = [i for i in prompt_idx for _ in range(g)]  # the prompt of each completion
        from rewardkit.ppo.rollout import sample

        with acc.autocast():
            if not self._fast_path_checked:
                # the lean T5 passes must agree with transformers on this model, in this precision
                from rewardkit.ppo import t5fast

                t5fast.check_fast_path(acc.unwrap_model(self.policy), query_ids, query_mask)
                self._fast_path_checked = True
            rollout = sample(self.policy, query_ids, query_mask, limits, self.sampling, group_size=g)
        t1 = time.perf_counter()
        # -- score
        completions = self.tokenizer.batch_decode(rollout.response_ids, skip_special_tokens=True)
        prompts = [self.train_set.prompts[i] for i in idx]
        refs = None if self.train_set.references is None else [self.train_set.references[i] for i in idx]
        batch = Batch(prompts, completions, refs, [dict(self.train_set.metadata[i]) for i in idx])
        scores = self._score(batch)
        everyone, all_lengths = self._all_scores(scores, rollout.lengths)
        self.reward.check_skipped_frac(everyone)  # max_skipped_frac, judged on every process's samples
        total = torch.tensor(scores.total, dtype=torch.float32, device=acc.device)
        # a sample some reward could not score gets no gradient (its total is a placeholder)
        valid = None if everyone.all_valid else torch.tensor(scores.valid, device=acc.device)
        t2 = time.perf_counter()
        # -- update
        stats = self.trainer.step(rollout, total, valid=valid)
        t3 = time.perf_counter()
        # -- log
        record = self._record(step, everyone, all_lengths, rollout, completions, stats, (t0, t1, t2, t3))
        if self.held_out is not None and (step + 1) % self.recipe.output.eval_every == 0:
            with acc.autocast():
                record.update(self.held_out(self.policy))
        if acc.is_main_process:
            self.metrics.write(record)
            if self.recipe.output.sample_every and step % self.recipe.output.sample_every == 0:
                self._log_samples(step, batch, scores)
        if self.recipe.output.trackers:
            acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)
        return record

    def _max_new_tokens(self, n: int) -> torch.Tensor:
        spec = self.recipe.generation.max_new_tokens
        if isinstance(spec, int):
            return torch.full((n,), spec, dtype=torch.long)
        return torch.randint(spec.min, spec.max + 1, (n,))

    def _gathered(self, values: list[float]) -> torch.Tensor:
        t = torch.tensor(values, dtype=torch.float32, device=self.acc.device)
        return self.acc.gather(t) if self.acc.num_processes > 1 else t

    def _all_scores(self, scores, lengths: torch.Tensor):
        """The step's scores of every process as one :class:`~rewardkit.compose.Scores`, and every row's length.

        One process: ``scores`` as they are. Several: totals, components
        (``None`` travels as NaN), validity and lengths gathered, failure
        counts summed, so every process logs and judges the same numbers.
        """
        from rewardkit.compose import Scores

        if self.acc.num_processes == 1:
            return scores, lengths.tolist()
        from accelerate.utils import gather_object

        def gathered(values):
            return self._gathered([math.nan if v is None else v for v in values]).tolist()

        components = {name: [None if math.isnan(v) else v for v in gathered(vals)]
                      for name, vals in scores.components.items()}
        valid = [v > 0.5 for v in gathered([1.0 if ok else 0.0 for ok in scores.valid])]
        failures = {}
        for part in gather_object([scores.failures]):
            for name, counts in part.items():
                failures[name] = failures[name] + counts if name in failures else counts
        return (Scores(gathered(scores.total), components, valid, failures),
                [int(n) for n in self._gathered(lengths.float().tolist()).tolist()])

    def _record(self, step, everyone, all_lengths, rollout, completions, stats, times) -> dict:
        from rewardkit.diagnostics import length_correlation

        t0, t1, t2, t3 = times
        record: dict = {"step": step}
        record.update(everyone.stats())
        record.update(everyone.failure_stats())
        # does a reward pay for length? (the first sign of a reward being gamed); undefined ones are left out
        record.update({k: v for k, v in length_correlation(everyone, [], lengths=all_lengths).items()
                       if math.isfinite(v)})
        record.update(stats)
        lengths = rollout.lengths.float()
        short = sum(len(c.split()) < SHORT_WORDS for c in completions) / max(len(completions), 1)
        tokens = float(lengths.sum())
        record.update({
            "response_length_mean": float(lengths.mean()),
            "response_short_frac": short,
            "time/generate_s": t1 - t0, "time/score_s": t2 - t1, "time/update_s": t3 - t2,
            "time/step_s": t3 - t0,
            "tokens_per_s": tokens / max(t1 - t0, 1e-9),
        })
        # warn on the first collapsing step, then at most every 10 steps, so the bar stays readable
        if short >= 0.5 and self.acc.is_main_process and step >= getattr(self, "_next_warn", 0):
            self._next_warn = step + 10
            from tqdm.auto import tqdm

            tqdm.write(f"warning: step {step}: {short:.0%} of completions are empty or under {SHORT_WORDS} words; "
                       "the policy may be collapsing onto what the reward model likes (reward hacking). "
                       "Consider a length or rouge penalty in rewards:, a lower learning rate or a higher KL.")
        return record

    def _log_samples(self, step: int, batch: Batch, scores) -> None:
        for i in range(min(self.recipe.output.samples_per_log, len(batch))):
            self.samples.write({
                "step": step, "prompt": batch.prompts[i], "completion": batch.completions[i],
                "reference": None if batch.references is None else batch.references[i],
                "total": scores.total[i],
                "components": {k: v[i] for k, v in scores.components.items()},
            })

    def _save_final(self) -> None:
        import hashlib
        import json

        from accelerate.utils import gather_object
        from safetensors.torch import save_file

        # every process fingerprints its own weights, so a multi-process run can show they stayed in sync
        digest = hashlib.sha256()
        for name, tensor in sorted(checkpoint.trainable_state(self.policy).items()):
            digest.update(name.encode())
            digest.update(tensor.float().numpy().tobytes())
        fingerprints = gather_object([digest.hexdigest()]) if self.acc.num_processes > 1 else [digest.hexdigest()]
        if self.acc.is_main_process:
            final = self.run_dir / "final"
            final.mkdir(parents=True, exist_ok=True)
            # only the trained adapter ("default"), not the frozen reference copy of a starting adapter
            self.policy.model.save_pretrained(str(final / "adapter"), safe_serialization=True,
                                              selected_adapters=["default"])
            if self.policy.v_head is not None:  # PPO's critic; GRPO and RLOO have none
                save_file({k: v.detach().cpu().contiguous() for k, v in self.policy.v_head.state_dict().items()},
                          str(final / "value_head.safetensors"))
            (final / "weights_by_rank.json").write_text(json.dumps({"sha256": fingerprints}, indent=1) + "\n")
        self.acc.wait_for_everyone()
