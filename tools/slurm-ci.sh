#!/usr/bin/env bash
# `make slurm-test`: a real single-node SLURM (munged, slurmctld, slurmd started here as background
# processes, no systemd), then `mile submit --slurm` on a smoke grid of synthetic data: every cell done,
# merged and reported; a requeue mid-training resumed to the same predictions; `scancel` leaving cells
# interrupted and `--resubmit` finishing them; a NaN cell and a failing base recorded FAILED, the base's
# array cancelled, `--resubmit` taking only the failed cells. The daemons are stopped by PID on exit.
# Usage: tools/slurm-ci.sh MILE_BINARY   (docs/SLURM.md)
set -euo pipefail
MILE=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${SLURM_CI_DIR:-$ROOT/.build/slurm-ci}
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
started=$(date +%s)
say() { echo "[slurm-ci $(( $(date +%s) - started ))s] $*"; }

# ---- install (about 10 s when missing) ----
missing=""
for p in slurmctld slurmd slurm-client munge; do dpkg -s $p >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  say "installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# ---- a one-node cluster in $W ----
rm -rf "$W" && mkdir -p "$W"/{state,spool,munge,log}
chmod 700 "$W/munge"
USER_NAME=$(id -un)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))   # half the machine
$SUDO mungekey --create --keyfile="$W/munge/munge.key" --force 2>/dev/null || dd if=/dev/urandom of="$W/munge/munge.key" bs=1 count=1024 2>/dev/null
chmod 400 "$W/munge/munge.key"
SOCKET="$W/munge/munge.socket"
cat > "$W/slurm.conf" <<EOF
ClusterName=milecli
SlurmctldHost=localhost
SlurmUser=$USER_NAME
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job starts again after 10 s instead of 120 s.
AuthInfo=socket=$SOCKET,cred_expire=10
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=20
MinJobAge=600
SchedulerParameters=defer_batch=0
# cons_tres with memory as a resource and a default per CPU: otherwise a task takes the whole node and
# the array runs one task at a time.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
NodeName=localhost CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$W/slurm.conf"

PIDS=()
stop_cluster() {
  scancel --user="$USER_NAME" >/dev/null 2>&1 || true
  for f in "$W/slurmd.pid" "$W/slurmctld.pid" "$W/munge/munged.pid"; do
    if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
  done
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_cluster EXIT

say "starting munged, slurmctld, slurmd"
# PropagatePrioProcess defaults to 0: jobs inherit slurmd's nice value, so `nice make slurm-test` keeps the
# cells niced too.
$SUDO munged --socket="$SOCKET" --key-file="$W/munge/munge.key" --pid-file="$W/munge/munged.pid" \
  --log-file="$W/log/munged.log" --seed-file="$W/munge/seed" --force
$SUDO slurmctld -f "$SLURM_CONF" -i
$SUDO slurmd -f "$SLURM_CONF"
for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed)'; then break; fi
  sleep 0.5
done
sinfo -h -o '%T' | grep -qE '^(idle|mixed)' || { echo "slurm did not come up"; sinfo || true; tail -20 "$W"/log/*.log; exit 1; }
say "cluster up: $(sinfo -h -o '%N %c CPUs %m MB %T')"

# ---- the grid ----
cd "$W"
"$MILE" data synth --out "$W/synth" --images 60 >/dev/null
GRID="$ROOT/experiments/slurm-smoke.yaml"
COMMON=(--slurm --slake "$W/synth" --cache "$W/cache" --runs "$W/runs" --max-parallel "$CPUS" --time 0:15:00)

say "dry run"
"$MILE" submit "$GRID" "${COMMON[@]}" --seeds 2 --dry-run > dry.txt
grep -q 'would submit: sbatch --parsable .*/base-1.sbatch' dry.txt
grep -q 'afterok:<base-1>' dry.txt
test "$(squeue -h | wc -l)" = 0
rm -rf "$W/runs"

run_folder() { ls -d "$W"/runs/*/ | sort | tail -1 | sed 's:/$::'; }
done_count() { "$MILE" status "$1" | tail -1; }

say "1. smoke grid: 2 rows x 2 seeds, base job + array + merge (sbatch --wait)"
"$MILE" submit "$GRID" "${COMMON[@]}" --seeds 2 --wait | tee submit1.txt
RUN1=$(run_folder)
"$MILE" status "$RUN1" | tee status1.txt
tail -1 status1.txt | grep -qx '  4 done'
grep -q '4/4 cells done' "$RUN1"/logs/merge-*.out
test -f "$RUN1/results/slurm-smoke.md"
sqlite3 "$RUN1/mile.db" "SELECT COUNT(*) FROM runs WHERE status = 'done' AND slurm_array_job_id IS NOT NULL AND run_uuid IS NOT NULL" | grep -qx 4
say "1. ok: 4 cells done, merged, reported"

# One row at `small` scale (epochs of a few seconds, so the requeue lands mid-training) in a new cache,
# requeued after its first epoch: the requeued task resumes from its checkpoint and gives the same losses
# and predictions as an uninterrupted run of the same cell.
SMALL=(--scale small --set recipe.epochs=3 --cell 'F T LoRA r4')
say "2. requeue mid-training"
"$MILE" submit "$GRID" "${COMMON[@]}" --seeds 1 "${SMALL[@]}" --cache "$W/cache2" > submit2.txt
RUN2=$(run_folder)
ARRAY2=$(awk '/^cells 1: array job/ {print $5}' submit2.txt)
MERGE2=$(awk '/^merge \+ report: job/ {print $5}' submit2.txt)
TASK_LOG="$RUN2/logs/cells-1-${ARRAY2}_0.out"
for _ in $(seq 1 600); do grep -q 'finetune epoch 1/3:' "$TASK_LOG" 2>/dev/null && break; sleep 0.2; done
grep -q 'finetune epoch 1/3:' "$TASK_LOG"
scontrol requeue "${ARRAY2}_0"
say "2. requeued ${ARRAY2}_0 after its first epoch"
# Meanwhile the same cell uninterrupted, in a third cache holding only the same base (the base job is done:
# the cell trains), on the other CPU.
mkdir -p "$W/cache3" && cp -r "$W/cache2/bases" "$W/cache3/"
"$MILE" submit "$GRID" "${COMMON[@]}" --seeds 1 "${SMALL[@]}" --cache "$W/cache3" > submit3.txt
RUN3=$(awk '/^run folder / {sub(":", "", $3); print $3}' submit3.txt)
MERGE3=$(awk '/^merge \+ report: job/ {print $5}' submit3.txt)
while squeue -h -j "$MERGE2,$MERGE3" 2>/dev/null | grep -q .; do sleep 1; done
"$MILE" status "$RUN2" | tee status2.txt
grep -q 'resuming fine-tuning after epoch' "$TASK_LOG"
sqlite3 "$RUN2/mile.db" "SELECT status || ' ' || slurm_restart_count FROM runs WHERE seed = 42 ORDER BY id" | tee restarts2.txt
grep -qx 'interrupted 0' restarts2.txt && grep -qx 'done 1' restarts2.txt
# Identical epoch losses, loss windows, validation losses and predictions.
q="SELECT group_concat(printf('%.17g', e.loss) || ' ' || e.step_losses_json || ' ' || printf('%.17g', e.validation_loss), ' ') FROM runs r JOIN epoch_metrics e ON e.run_id = r.id WHERE r.status = 'done' AND r.seed = 42"
p="SELECT group_concat(p.qid || '=' || p.prediction, ' ') FROM runs r JOIN predictions p ON p.run_id = r.id WHERE r.status = 'done' AND r.seed = 42"
test -n "$(sqlite3 "$RUN2/mile.db" "$q")"
test "$(sqlite3 "$RUN2/mile.db" "$q")" = "$(sqlite3 "$RUN3/mile.db" "$q")"
test "$(sqlite3 "$RUN2/mile.db" "$p")" = "$(sqlite3 "$RUN3/mile.db" "$p")"
say "2. ok: requeued cell resumed after epoch 1 with the same losses and predictions as an uninterrupted run"

say "3. scancel mid-training, then --resubmit"
"$MILE" submit "$GRID" "${COMMON[@]}" --seeds 1 --scale small --set recipe.epochs=3 --cache "$W/cache4" > submit4.txt
RUN4=$(run_folder)
ARRAY4=$(awk '/^cells 1: array job/ {print $5}' submit4.txt)
MERGE4=$(awk '/^merge \+ report: job/ {print $5}' submit4.txt)
for _ in $(seq 1 600); do grep -q 'finetune epoch 1/3 step' "$RUN4"/logs/cells-1-"${ARRAY4}"_*.out 2>/dev/null && break; sleep 0.2; done
scancel "$ARRAY4"
while squeue -h -j "$MERGE4" 2>/dev/null | grep -q .; do sleep 1; done
"$MILE" status "$RUN4" | tee status4.txt
grep -q 'interrupted' status4.txt
"$MILE" submit --slurm --resubmit "$RUN4" --wait | tee resubmit4.txt
grep -q '^resubmitting' resubmit4.txt
"$MILE" status "$RUN4" | tee status4b.txt
tail -1 status4b.txt | grep -qx '  2 done'
say "3. ok: cancelled cells recorded interrupted, the resubmission finished them"

# Two bases: one pretrains and serves a good row and a row whose fine-tuning diverges (lr 1e30); the other's
# pretraining diverges. The diverging cell is FAILED with its reason, the failed base job cancels its array
# (no task of it runs) and records its cells failed, the merge and report still run, and a resubmission
# would submit exactly the two failed cells.
say "4. a NaN cell, a failing base, --resubmit of the failed cells"
mkdir -p "$W/grid" && cp "$ROOT/experiments/defaults.yaml" "$W/grid/"
cat > "$W/grid/slurm-fail.yaml" <<'YAML'
table: slurm-fail
extends: defaults.yaml
set:
  model: {scale: smoke}
  pretraining: {corpus: [slake-train-captions], epochs: 1, batch: 16, lr: 1.0e-3}
  data: {instruction_sources: [slake-train]}
  recipe: {epochs: 1, batch: 16, lr: 1.0e-3}
rows:
  - {vit: F, jtm: lora, dec: lora, rank: 4}
  - {name: nan-cell, vit: F, jtm: T, dec: lora, rank: 4, set: {recipe: {lr: 1.0e30}}}
  - {name: nan-base, vit: F, jtm: T, dec: ia3, set: {pretraining: {lr: 1.0e30}}}
YAML
"$MILE" submit "$W/grid/slurm-fail.yaml" "${COMMON[@]}" --seeds 1 --cache "$W/cache5" --wait | tee submit5.txt
RUN5=$(run_folder)
"$MILE" status "$RUN5" | tee status5.txt
grep -q 'nan-cell .*failed.*loss nan at epoch 0' status5.txt
grep -q 'nan-base .*failed.*base pretraining failed' status5.txt
grep -Eq 'F LoRA LoRA r4 .*done' status5.txt
grep -q 'failed: base' "$RUN5"/logs/base-2-*.out
if ls "$RUN5"/logs/cells-2-* >/dev/null 2>&1; then echo "a task of the failed base's array ran"; exit 1; fi
grep -q '1/3 cells done' "$RUN5"/logs/merge-*.out
"$MILE" submit --slurm --resubmit "$RUN5" --dry-run | tee resubmit5.txt
grep -q '^resubmitting 2 of 3 cells' resubmit5.txt
grep -q 'nan-cell seed 42 .*(failed)' resubmit5.txt && grep -q 'nan-base seed 42 .*(failed)' resubmit5.txt
say "4. ok: NaN cell and failed base recorded FAILED with reasons, the base's array cancelled, merge ran, resubmission takes only them"

say "all SLURM tests passed in $(( $(date +%s) - started )) s"
