#!/usr/bin/env bash
# Randomized kill test (issue 20): a smoke grid on synthetic data is run once without interruption, then in
# rounds, each with a fresh database and cache, SIGKILLed at random moments (the runner, or the parent of
# `--jobs 2`) and restarted until a run finishes. Every round must end with the uninterrupted grid's scores,
# epoch losses, engine peak, predictions and base checkpoint (tools/kill_test_compare.py).
#   tools/kill-test.sh BIN [KILLS]   at least KILLS kills that land (default 5); KILL_SEED=N repeats the
#                                    moments of an earlier run (its seed is printed first).
set -euo pipefail
BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
KILLS="${2:-5}"
SEED="${KILL_SEED:-$(( $(date +%s) % 100000 ))}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$ROOT/.build/kill-test"
rm -rf "$WORK" && mkdir -p "$WORK"
cd "$WORK"
echo "kill-test: seed $SEED, at least $KILLS kills (KILL_SEED=$SEED repeats these moments)"
RANDOM=$SEED
export MILE_THREADS=1
unset SLAKE_DIR RAD_DIR

"$BIN" data synth --out data --images 150 --seed 3 >/dev/null
cp "$ROOT/experiments/defaults.yaml" .
cat > k.yaml <<'YAML'
table: k
extends: defaults.yaml
set:
  model: {scale: smoke}
  pretraining: {corpus: [slake-train-captions], epochs: 3, batch: 16, lr: 1.0e-3}
  data: {instruction_sources: [slake-train]}
  recipe: {epochs: 4, batch: 16, lr: 1.0e-3}
rows:
  - {vit: F, jtm: lora, dec: lora, rank: 4}
  - {vit: T, jtm: T, dec: ia3}
YAML

run() {  # run NAME [extra args...]: the grid into NAME.db with its own cache
  local name="$1"; shift
  "$BIN" run k.yaml --slake data --db "$name.db" --cache "cache-$name" --out "out-$name" --quiet "$@"
}

# The workers of a killed --jobs parent must stop on their own (they watch their parent).
wait_for_workers() {
  for _ in $(seq 1 300); do pgrep -f "cache-$1 " >/dev/null || return 0; sleep 0.1; done
  echo "kill-test: workers of round $1 outlived their killed parent by 30 s"; exit 1
}

start=$(date +%s%N)
run ref > ref.log 2>&1
total_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "kill-test: uninterrupted grid in $total_ms ms"

# Each start is killed 5-70 % of the uninterrupted time after it began; a round ends when a run finishes
# before its kill or after 4 kills (then one run without a kill finishes it).
kills=0; rounds=()
while (( kills < KILLS )); do
  name="round$(( ${#rounds[@]} + 1 ))"; rounds+=("$name"); n=0
  while (( n < 4 )); do
    jobs=1; if (( (kills + n) % 2 == 1 )); then jobs=2; fi
    at_ms=$(( total_ms * (5 + RANDOM % 66) / 100 ))
    run "$name" --jobs "$jobs" >> "$name.log" 2>&1 &
    pid=$!
    sleep "$(printf '%d.%03d' $((at_ms / 1000)) $((at_ms % 1000)))"
    if ! kill -KILL "$pid" 2>/dev/null; then
      wait "$pid" || { echo "kill-test: $name failed on its own ($name.log):"; tail -20 "$name.log"; exit 1; }
      echo "kill-test: $name finished before the kill at $at_ms ms"
      break
    fi
    wait "$pid" 2>/dev/null || true
    wait_for_workers "$name"
    n=$((n + 1))
    echo "kill-test: $name, kill $n at $at_ms ms (--jobs $jobs)"
  done
  kills=$((kills + n))
  run "$name" >> "$name.log" 2>&1 || { echo "kill-test: the last run of $name failed:"; tail -20 "$name.log"; exit 1; }
done

for name in ref "${rounds[@]}"; do
  "$BIN" export k.yaml --db "$name.db" --slake data --format json --out "export-$name" >/dev/null
  "$BIN" export k.yaml --db "$name.db" --slake data --format jsonl --out "export-$name" >/dev/null
done
echo "kill-test: $kills kills in ${#rounds[@]} rounds"
python3 "$ROOT/tools/kill_test_compare.py" ref "${rounds[@]}"
