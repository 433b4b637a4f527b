#!/usr/bin/env bash
# bench/gpu.sh: the real-shape rehearsal and the base-size comparison on a CUDA machine, each in a fixed time budget.
#
#   bash bench/gpu.sh            # on a CUDA machine: results into bench/results/gpu/
#   bash bench/gpu.sh --dry-run  # on CPU: the same steps, shrunk (batch 2, 1 step, tiny compare), into $OUT or /tmp
#
# (a) builds the rehearsal cache (python -m rewardkit.rehearsal build) unless $HF_HOME_REHEARSAL has one, runs
#     bench/gpu_rehearsal.py: recipes/detox.yaml unchanged (bf16, batch 16, mini-batch 4, max_new_tokens
#     100..400) for $STEPS steps; prints s/step, peak GPU memory, step-0 KL/approx_kl/clipfrac;
# (b) bench/compare.py --sizes base against the peer (../shared/bench/peer; its run.sh builds its venv
#     from the package index and runs on CPU only), rewardkit on cuda through bench/rk_ppo.py --device cuda.
#     Without the package index the peer cannot be built: (b) then says so and runs rewardkit's side alone
#     if the peer's models are there.
# Budgets (seconds): BUDGET_BUILD=240 BUDGET_REHEARSAL=300 BUDGET_COMPARE=240. Env: PYTHON (.venv/bin/python or
# python3), OUT (bench/results/gpu), STEPS (3).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
if [ -n "${PYTHON:-}" ]; then :; elif [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
BUDGET_BUILD=${BUDGET_BUILD:-240}
BUDGET_REHEARSAL=${BUDGET_REHEARSAL:-300}
BUDGET_COMPARE=${BUDGET_COMPARE:-240}
STEPS=${STEPS:-3}
if [ $DRY = 1 ]; then OUT=${OUT:-/tmp/rewardkit-gpu-dry}; else OUT=${OUT:-bench/results/gpu}; fi
mkdir -p "$OUT"
WORK=${WORK:-${TMPDIR:-/tmp}/rewardkit-gpu}
mkdir -p "$WORK"
log() { echo "[gpu.sh $(date +%H:%M:%S)] $*" | tee -a "$OUT/gpu.log" >&2; }

log "python: $PYTHON; out: $OUT; dry-run: $DRY"
if ! "$PYTHON" -c "import torch, transformers, peft, accelerate, datasets, rewardkit" 2>>"$OUT/gpu.log"; then
  log "cannot import torch/transformers/peft/accelerate/datasets/rewardkit with $PYTHON: install them (pip install -e .) first"
  exit 3
fi
"$PYTHON" - <<'PY' | tee "$OUT/env.json"
import json, torch, transformers
info = {"torch": torch.__version__, "transformers": transformers.__version__, "cuda": torch.cuda.is_available()}
if torch.cuda.is_available():
    info.update(device=torch.cuda.get_device_name(0), bf16=torch.cuda.is_bf16_supported(),
                memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
print(json.dumps(info))
PY
CUDA=$("$PYTHON" -c "import torch; print(int(torch.cuda.is_available()))")
if [ "$CUDA" != 1 ] && [ $DRY = 0 ]; then
  log "no CUDA device visible: run with --dry-run on a CPU machine"
  exit 4
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/gpu.log" 2>&1

# ---------------------------------------------------------------- (a) rehearsal
HFH=${HF_HOME_REHEARSAL:-$WORK/hf}
if [ ! -f "$HFH/manifest.json" ]; then
  log "(a) building the rehearsal cache in $HFH (budget ${BUDGET_BUILD}s)"
  rm -rf "$HFH"
  timeout "$BUDGET_BUILD" "$PYTHON" -m rewardkit.rehearsal build --out "$HFH" --threads 4 >> "$OUT/gpu.log" 2>&1 \
    || { log "(a) cache build failed or ran past its budget"; exit 5; }
fi
if [ $DRY = 1 ]; then
  SETS=(--steps 1 --set ppo.batch_size=2 --set ppo.mini_batch_size=2)
else
  SETS=(--steps "$STEPS")
fi
RUN_DIR="$WORK/run-$(date +%s)"
log "(a) rehearsal: recipes/detox.yaml ${SETS[*]} (budget ${BUDGET_REHEARSAL}s)"
HF_HOME="$HFH" HF_HUB_OFFLINE=1 timeout "$BUDGET_REHEARSAL" "$PYTHON" bench/gpu_rehearsal.py "${SETS[@]}" \
  --out-dir "$RUN_DIR" > "$OUT/rehearsal.json" 2>> "$OUT/gpu.log"
rc=$?
if [ $rc = 0 ]; then
  tail -n 1 "$OUT/rehearsal.json"
  cp "$RUN_DIR/metrics.jsonl" "$OUT/rehearsal_metrics.jsonl" 2>/dev/null
else
  log "(a) rehearsal failed (exit $rc; 124 = past its budget); see $OUT/gpu.log"
  [ -f "$RUN_DIR/metrics.jsonl" ] && cp "$RUN_DIR/metrics.jsonl" "$OUT/rehearsal_metrics_partial.jsonl"
fi

# ---------------------------------------------------------------- (b) compare at base size
PEER=${PEER_DIR:-$ROOT/../shared/bench/peer}
if [ $DRY = 1 ]; then SIZE=tiny; else SIZE=base; fi
if [ ! -f "$PEER/run.sh" ]; then
  log "(b) skipped: no peer at $PEER"
  exit 0
fi
DEV=cpu; [ "$CUDA" = 1 ] && DEV=cuda
log "(b) compare at size $SIZE (budget ${BUDGET_COMPARE}s; the peer runs on CPU, rewardkit on $DEV and on CPU)"
START=$SECONDS
# the peer's venv and models (first use builds them from the package index)
if timeout "$BUDGET_COMPARE" bash "$PEER/run.sh" 1 --size "$SIZE" > "$OUT/peer_setup.log" 2>&1; then
  LEFT=$((BUDGET_COMPARE - (SECONDS - START)))
  if [ "$DEV" = cuda ]; then
    # rewardkit on the GPU, the peer (CPU-only) as compare.py runs it
    timeout "$LEFT" "$PYTHON" bench/rk_ppo.py 3 --size "$SIZE" --device cuda > "$OUT/compare_rk_cuda.json" 2>> "$OUT/gpu.log" \
      && tail -n 1 "$OUT/compare_rk_cuda.json"
    LEFT=$((BUDGET_COMPARE - (SECONDS - START)))
  fi
  timeout "$LEFT" "$PYTHON" bench/compare.py --sizes "$SIZE" --runs 1 --json "$OUT/compare.json" \
    > "$OUT/compare.md" 2>> "$OUT/gpu.log" && cat "$OUT/compare.md" \
    || log "(b) compare.py failed or ran past its budget (exit $?)"
else
  log "(b) the peer could not be set up within the budget (no package index here?): see $OUT/peer_setup.log"
  tail -n 3 "$OUT/peer_setup.log" >&2
fi
log "done: $OUT"
