#!/usr/bin/env bash
# The device check: what an accelerator does with aevb, in one go, one summary line per part.
#
#   bash scripts/device_check.sh              # on a GPU or TPU machine, from the repo root
#   AEVB_DEVICE_CHECK_QUICK=1 bash scripts/device_check.sh   # small sizes: checks the script
#
# Parts (each under its own time limit, so that the whole stays within about 4 minutes on
# one GPU and can be run, fixed and run again within 10 minutes of device time):
#   backend     the platform and devices JAX sees
#   tests       the tests that exercise a device (not those that force 8 CPU devices or start
#               several processes), compiled as runs compile; failures are named
#   throughput  examples/s and floor_fraction of the dense VAE; examples/s, conv_fraction
#               and gradients_speedup (XLA's gradients against the written-out ones,
#               model.conv.gradients) of the conv VAE
#   sweep       T = 1, 8 and 64 trials of the default VAE, one by one and vectorized
#   default     the default command, with its time: line
# Every part's whole output goes to $OUT/device_check/<part>.log (OUT: default a temporary
# directory); the summary lines to stdout and $OUT/device_check/summary.txt.
#
# PYTHON picks the interpreter (default .venv/bin/python, else python3). It needs aevb's
# dependencies (pyproject.toml): on a machine that has JAX, Flax, Optax and Orbax but not
# ml-collections or tensorboardX, install those first (docs/devices.md).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
QUICK=${AEVB_DEVICE_CHECK_QUICK:-0}
DIR=${OUT:-$(mktemp -d)}/device_check
mkdir -p "$DIR"
: >"$DIR/summary.txt"
export PYTHONUNBUFFERED=1 AEVB_TEST_XLA_OPTIMIZE=1
# Several processes share one GPU (the tests' two workers, a sweep): none may take 75% of it.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
WORK=$(mktemp -d)

say() { echo "$*" | tee -a "$DIR/summary.txt"; }

# part NAME LIMIT_SECONDS COMMAND...: runs COMMAND into NAME.log; returns its status. The
# limits are a GPU's; a quick check on a CPU gets SCALE times longer.
SCALE=1
[ "$QUICK" = 1 ] && SCALE=6
part() {
  local name=$1 limit=$(( $2 * SCALE )) start status
  shift 2
  start=$(date +%s)
  timeout "$limit" "$@" >"$DIR/$name.log" 2>&1
  status=$?
  echo "$(( $(date +%s) - start ))" >"$DIR/$name.seconds"
  return $status
}
took() { cat "$DIR/$1.seconds"; }

if ! "$PYTHON" -c "import jax, flax, optax, orbax.checkpoint, ml_collections, tensorboardX, \
sklearn, PIL, matplotlib" 2>"$DIR/imports.log"; then
  say "imports: FAILED with $PYTHON: $(tail -1 "$DIR/imports.log")"
  exit 1
fi

part backend 60 "$PYTHON" -c "import jax; print(jax.__version__, jax.default_backend(), \
jax.devices())"
say "backend: $(tail -1 "$DIR/backend.log")"

if [ "$QUICK" = 1 ]; then
  tests=(tests/test_loop.py tests/test_train.py)
  epochs=1; trials=(1 2); default_epochs=2
else
  tests=(tests/test_train.py tests/test_conv.py tests/test_iwae.py tests/test_pretrain.py
         tests/test_layerwise.py tests/test_semisupervised.py tests/test_sweeps.py
         tests/test_models.py tests/test_objectives.py)
  epochs=3; trials=(1 8 64); default_epochs=30
fi
# -vv names each test as it ends (-vv: addopts' -q cancels one -v), so that a part stopped
# at its limit still names its failures (the first GPU run's were lost that way: pytest's
# summary comes only at the end).
workers=2
[ "$(nproc)" -ge 8 ] && workers=4
part tests 150 "$PYTHON" -m pytest -p no:cacheprovider -vv -rf -n "$workers" \
  -k "not worker_processes and not eight_devices and not two_processes" "${tests[@]}"
status=$?
failed=$(grep -oE "(FAILED|ERROR) tests/[^ ]+" "$DIR/tests.log" | sort -u | tr '\n' ' ')
ended=$(grep -cE "\] (PASSED|FAILED|ERROR|SKIPPED) tests/" "$DIR/tests.log")
limit=""
[ "$status" = 124 ] && limit=", stopped at its limit after $(took tests) s"
say "tests: $ended ended$limit; $(grep -E "passed|failed" "$DIR/tests.log" | tail -1 \
  | tr -d '=')(failed: ${failed:-none})"

# The conv benchmark times XLA's gradients against the written-out ones in the same process.
for file in vae.py vae.py:conv; do
  name=throughput_dense
  [ "$file" = vae.py:conv ] && name=throughput_conv
  if part "$name" 120 "$PYTHON" -m benchmarks.throughput --config="experiments/$file" \
      --epochs="$epochs"; then
    say "throughput $file: $(grep -E '^(examples_per_s|floor_fraction|conv_fraction|gradients_speedup)=' \
      "$DIR/$name.log" | sed 's/  .*//' | tr '\n' ' ')($(took "$name") s)"
  else
    say "throughput $file: FAILED ($(tail -1 "$DIR/$name.log"))"
  fi
done

for t in "${trials[@]}"; do  # one trial alone; 64 trials vectorized against it
  ways=sequential,vectorized
  [ "$t" = 1 ] && ways=sequential
  [ "$t" = 64 ] && ways=vectorized
  if part "sweep_$t" 120 "$PYTHON" -m benchmarks.sweep --config=experiments/vae.py \
      --trials="$t" --epochs=2 --workers=0 --ways="$ways"; then
    say "sweep T=$t: $(grep -E '^(sequential|vectorized|vectorized_over)' "$DIR/sweep_$t.log" \
      | tr '\n' ' ')"
  else
    say "sweep T=$t: FAILED ($(tail -1 "$DIR/sweep_$t.log"))"
  fi
done

if part default 120 "$PYTHON" launch.py --config=experiments/vae.py \
    --config.train.num_epochs="$default_epochs" --workdir="$WORK/default"; then
  say "default: $(grep -E '^time:' "$DIR/default.log") (wall $(took default) s)"
else
  say "default: FAILED ($(tail -1 "$DIR/default.log"))"
fi
rm -rf "$WORK"
