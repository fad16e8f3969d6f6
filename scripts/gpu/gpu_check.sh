#!/usr/bin/env bash
# Every GPU check in one prepared command; see docs/PERFORMANCE.md ("GPU check").
#
#   bash scripts/gpu/gpu_check.sh OUT_DIR              # on a CUDA machine (one H100/H200: under 9 minutes)
#   bash scripts/gpu/gpu_check.sh OUT_DIR --dry-run    # the same sequence on the CPU, tiny shapes and steps
#
# The dry run checks the sequence, not the speed: its step limits are the GPU's times
# GPU_CHECK_DRY_SCALE (default 5), so a busy laptop or CI runner passes it.
#
# Installs .whl/*.whl (scripts/gpu/gpu_wheels.sh) into a private directory put first on PYTHONPATH,
# never into the interpreter's own site-packages, then runs each step under `timeout`. A step that
# fails or times out is recorded and the next one runs. OUT_DIR gets at most 8 small files, all
# named in OUT_DIR/summary.md. Exit status: 0 when every step passed or was skipped, else 1.
set -uo pipefail

usage() { echo "usage: bash scripts/gpu/gpu_check.sh OUT_DIR [--dry-run]" >&2; exit 2; }
OUT="" DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -*) usage ;;
    *) [[ -z "$OUT" ]] || usage; OUT=$arg ;;
  esac
done
[[ -n "$OUT" ]] || usage

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 1
[[ -n "${GPU_CHECK_KEEP:-}" ]] || trap 'rm -rf "$WORK"' EXIT
SITE=$WORK/site          # our dependencies (hydra, omegaconf, ...) where the machine lacks them
SITE_CMP=$WORK/site-cmp  # transformers 4.46.3 and mega-pytorch: only the speed step sees them
COMPARE=transformers,tokenizers,huggingface-hub,safetensors,regex,mega-pytorch,einops
STEPS=$WORK/steps.tsv
: >"$STEPS"
: >"$OUT/log.txt"

# Per-step time limits in seconds. Their sum is the whole check's budget: at most 540 s (9 minutes,
# under the device's 10 minutes a command); tests/test_gpu_check.py adds them up.
declare -A LIMIT=(
  [install]=30
  [env]=10
  [selfcheck]=40   # Triton compiles the kernels of each paper task's widths, fp32 and bf16
  [pytest]=140     # Triton compiles each kernel variant once (fp32, bf16; causal; masked)
  [sdpa]=40
  [speed]=70       # the driver starts no row past its budget: fewer rows, not a failure
  [listops]=40
  [pathfinder]=70  # numba compiles the Pathfinder generator first (cached for Path-X)
  [pathx]=50
  [megalodon]=40   # Megalodon's paper ListOps run: CEMA by cuFFT, normalised attention by SDPA
  [summary]=10
)

if (( DRY )); then
  SCALE=${GPU_CHECK_DRY_SCALE:-5}
  [[ "$SCALE" =~ ^[1-9][0-9]*$ ]] || { echo "GPU_CHECK_DRY_SCALE=$SCALE must be a whole number >= 1" >&2; exit 2; }
  for name in "${!LIMIT[@]}"; do LIMIT[$name]=$(( LIMIT[$name] * SCALE )); done
fi

export REPO PY OUT WORK DRY SITE SITE_CMP COMPARE
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 LRA_MEGA_CACHE=$WORK/cache WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false \
  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if (( DRY )); then
  # rehearse a machine without wandb and datasets (the GPU machine has neither): importing them fails
  for mod in wandb datasets; do
    mkdir -p "$WORK/hidden/$mod" && echo "raise ImportError('$mod is hidden by gpu_check.sh --dry-run')" \
      >"$WORK/hidden/$mod/__init__.py"
  done
  export PYTHONPATH="$WORK/hidden:$PYTHONPATH"
fi

# record STEP STATUS SECONDS NOTE
record() {
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${LIMIT[$1]}" "$4" >>"$STEPS"
  echo "gpu_check: $1: $2 (${3}s of ${LIMIT[$1]}s)${4:+ — $4}"
}

skip() { record "$1" skipped 0 "$2"; }

# step NAME CMD...: run CMD under the step's time limit, log to $WORK/NAME.log, record the outcome.
# timeout runs programs, not shell functions: a function step is `step NAME bash -c FUNCTION`
# after `export -f FUNCTION` (the variables it reads are exported below).
step() {
  local name=$1 start rc seconds status note=""
  shift
  echo "gpu_check: $name: running (limit ${LIMIT[$name]}s)"
  start=$(date +%s.%N)
  timeout --kill-after=5 "${LIMIT[$name]}" "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", e - s }')
  case $rc in
    0) status=ok ;;
    124 | 137) status=TIMEOUT; note="killed at the time limit (${LIMIT[$name]} s)" ;;
    *) status=FAIL; note="exit status $rc; $(grep -v '^\s*$' "$WORK/$name.log" | tail -1 | cut -c1-150 | tr '\t|' '  ')" ;;
  esac
  { echo "===== $name: $status (${seconds}s) ====="; tail -n 150 "$WORK/$name.log"; } >>"$OUT/log.txt"
  record "$name" "$status" "$seconds" "$note"
}

# --- 1. install the carried wheels --------------------------------------------------------------
if [[ -d "$REPO/.whl" ]] && compgen -G "$REPO/.whl/*.whl" >/dev/null; then
  install_wheels() {
    "$PY" "$REPO/scripts/gpu/gpu_install.py" "$REPO/.whl" "$SITE" --skip "$COMPARE" &&
      "$PY" "$REPO/scripts/gpu/gpu_install.py" "$REPO/.whl" "$SITE_CMP" --only "$COMPARE"
  }
  export -f install_wheels
  step install bash -c install_wheels
else
  skip install "no .whl/ (bash scripts/gpu/gpu_wheels.sh makes it); the machine's own packages are used"
fi

# --- 2. the machine -------------------------------------------------------------------------------
step env "$PY" "$REPO/scripts/gpu/gpu_summary.py" env "$WORK/env.json"
if (( ! DRY )) && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  echo "gpu_check: warning: no CUDA device; the results are CPU figures at paper shapes (use --dry-run)" >&2
fi

# --- 3. the attention self-check: what impl=auto would run, per paper task's combination -----------
selfcheck_args=(--out "$OUT/selfcheck.json" --budget-s $(( LIMIT[selfcheck] - 10 )))
(( DRY )) && selfcheck_args+=(--dry-run)
step selfcheck "$PY" "$REPO/scripts/gpu/gpu_selfcheck.py" "${selfcheck_args[@]}"

# --- 4. pytest -m gpu: Triton kernels (tests/), every attention path and the lean EMA (tests/test_gpu_paths.py)
# -v: one line per test as it ends, so a run killed at its limit still says what passed
run_pytest() {
  cd "$REPO" && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$PY" -m pytest -m gpu -v -rfEs --tb=short -p no:cacheprovider \
    --continue-on-collection-errors tests >"$OUT/pytest.txt" 2>&1
  local rc=$?
  tail -n 5 "$OUT/pytest.txt"
  return "$rc"
}
export -f run_pytest
step pytest bash -c run_pytest

# --- 5. SDPA backend of the softmax path with our masks ---------------------------------------------
sdpa_args=(--out "$OUT/sdpa.json" --budget-s $(( LIMIT[sdpa] - 12 )))
(( DRY )) && sdpa_args+=(--dry-run)
step sdpa "$PY" "$REPO/scripts/gpu/gpu_sdpa_probe.py" "${sdpa_args[@]}"

# --- 6. speed: lra_mega vs the HF port vs mega-pytorch, fp32 and bf16, one process ------------------
run_speed() {
  local path=$PYTHONPATH
  # the HF port's transformers is imported by torchmetrics too: use it only if it imports cleanly
  if [[ -d "$SITE_CMP" ]] && PYTHONPATH="$SITE_CMP:$path" "$PY" -c \
      'import torchmetrics, transformers; from transformers import MegaConfig, MegaModel' 2>"$WORK/compare.err"; then
    path="$SITE_CMP:$path"
  else
    echo "gpu_check: the carried transformers is not used: $(tail -1 "$WORK/compare.err" 2>/dev/null)"
  fi
  local args=(--out "$OUT/speed" --budget-s "$SPEED_BUDGET")
  (( DRY )) && args+=(--dry-run)
  PYTHONPATH=$path "$PY" "$REPO/scripts/gpu/gpu_speed.py" "${args[@]}"
}
export -f run_speed
export SPEED_BUDGET=$(( LIMIT[speed] - 20 ))  # the driver stops starting rows then, and writes its files
step speed bash -c run_speed

# --- 7. short paper runs (Mega on three tasks, Megalodon on ListOps) -------------------------------
# GPU: the paper model, batch and fp32, warmup cut to a tenth of the steps so the loss can fall;
# dry run: the same commands with a one-layer model of width 16, batches of 2, on the CPU.
TINY=(trainer.accelerator=cpu trainer.num_sanity_val_steps=0 model.depth=1 model.dim=16 model.zdim=8
      model.hdim=32 model.chunk_size=64 data.batch_size=2 data.num_workers=0)
if (( DRY )); then
  SHORT=6 FEW=3 LIMITS='{train: 16, val: 4, test: 4}' LIMITS_X='{train: 8, val: 4, test: 4}'
else
  SHORT=200 FEW=8 LIMITS='{train: 4096, val: 256, test: 64}' LIMITS_X='{train: 1024, val: 128, test: 64}'
fi

# paper_run NAME EXPERIMENT STEPS EXAMPLE_LIMITS [gpu_run.py flags]
paper_run() {
  local name=$1 experiment=$2 n=$3 limits=$4
  shift 4
  local max_time half=$(( LIMIT[$name] / 2 ))  # training stops itself well inside the limit
  max_time=$(printf '00:%02d:%02d:%02d' $(( half / 3600 )) $(( half % 3600 / 60 )) $(( half % 60 )))
  local overrides=("experiment=$experiment" logger=csv test=false "hydra.run.dir=$WORK/runs/$name"
                   "trainer.max_steps=$n" "trainer.val_check_interval=$n" "trainer.max_time=$max_time"
                   "trainer.log_every_n_steps=$(( n >= 100 ? 2 : 1 ))" "data.limit_examples=$limits"
                   "optim.warmup_steps=$(( n >= 20 ? n / 10 : 1 ))")
  (( DRY )) && overrides+=("${TINY[@]}")
  local flags=(--name "$name" --record "$OUT/runs.json" "$@")
  (( DRY )) && flags+=(--dry-run)
  step "$name" "$PY" "$REPO/scripts/gpu/gpu_run.py" "${flags[@]}" -- "${overrides[@]}"
}
paper_run listops listops_paper "$SHORT" "$LIMITS" --loss-must-fall
paper_run pathfinder pathfinder_paper "$SHORT" "$LIMITS" --loss-must-fall
paper_run pathx pathx_paper "$FEW" "$LIMITS_X"
paper_run megalodon listops_megalodon "$SHORT" "$LIMITS" --loss-must-fall

# --- 8. summary.md ------------------------------------------------------------------------------------
summary_args=(summary "$OUT" "$STEPS" "$WORK/env.json")
(( DRY )) && summary_args+=(--dry-run)
printf 'summary\tok\t0\t%s\tthis file\n' "${LIMIT[summary]}" >>"$STEPS"  # its own row, before it is written
if timeout "${LIMIT[summary]}" "$PY" "$REPO/scripts/gpu/gpu_summary.py" "${summary_args[@]}" >>"$OUT/log.txt" 2>&1; then
  echo "gpu_check: summary: ok"
else
  sed -i '$ s/\tok\t/\tFAIL\t/' "$STEPS"
  { echo "# GPU check — the summary step failed (see log.txt)"; echo; echo "| step | status | seconds | limit s | note |"
    echo "|---|---|---|---|---|"; sed 's/\t/ | /g; s/^/| /; s/$/ |/' "$STEPS"; } >"$OUT/summary.md"
  echo "gpu_check: summary: FAIL"
fi

failed=$(cut -f2 "$STEPS" | grep -cvE '^(ok|skipped)$')
echo "gpu_check: done: $(wc -l <"$STEPS") steps, $failed failed; files in $OUT: $(cd "$OUT" && echo *)"
(( failed == 0 ))
