#!/usr/bin/env bash
# Runs every benchmark in RESULTS.md, one after another (never in parallel: they share 2 cores).
# Usage: benchmarks/run_all.sh [python]   (default: python on PATH); logs and JSON go to benchmarks/results/
set -euo pipefail
PY=${1:-python}
cd "$(dirname "$0")/.."
OUT=benchmarks/results
mkdir -p "$OUT"
FMNIST=(--model resnet20v2 --width 0.5 --batch 128 --image 28x28x1 --eps 1.0)
CIFAR=(--model resnet20v2 --width 1.0 --batch 128 --image 32x32x3 --eps 0.5)
run() {  # run NAME ARGS...: table to NAME.txt, progress to NAME.log
  local name=$1; shift
  echo "== $name: $*" >&2
  "$PY" "$@" --json "$OUT/$name.json" > "$OUT/$name.txt" 2> >(grep -v '^[IWE]0000\|^WARNING: All log\|^To enable' > "$OUT/$name.log")
  cat "$OUT/$name.txt"
}
# 1. Fashion-MNIST-sized (the quickstart's robust model), all components
run fmnist_k7 benchmarks/bench_train_step.py "${FMNIST[@]}" --steps-k 7 --repeats 20 --warmup 2 --components
# 2. CIFAR-sized ResNet20v2 at full width, the core + the what-if fix
run cifar_k7 benchmarks/bench_train_step.py "${CIFAR[@]}" --steps-k 7 --repeats 10 --warmup 2 --components \
  --only train_std,grad,train_adv,attack,fwd,attack_fix,train_adv_fix
# 3. k = 10 on the small model, core + fix
run fmnist_k10 benchmarks/bench_train_step.py "${FMNIST[@]}" --steps-k 10 --repeats 12 --warmup 2 --components \
  --only train_std,grad,train_adv,attack,fwd,attack_fix,train_adv_fix
# 4. XLA vs default (attack alone and the whole adversarial step), small model
run fmnist_k7_xla benchmarks/bench_train_step.py "${FMNIST[@]}" --steps-k 7 --repeats 6 --warmup 2 --xla --xla-train \
  --only train_std,grad,train_adv,attack,attack_xla,train_adv_xla
# 5. XLA vs default, attack alone, CIFAR-sized model
run cifar_k7_xla benchmarks/bench_train_step.py "${CIFAR[@]}" --steps-k 7 --repeats 4 --warmup 1 --xla \
  --only grad,attack,attack_xla
# 6. Kernel counts (what actually executes), both models
run ops_fmnist_k7 benchmarks/count_ops.py "${FMNIST[@]}" --steps-k 7 --components
run ops_cifar_k7 benchmarks/count_ops.py "${CIFAR[@]}" --steps-k 7 --components \
  --only train_std,grad,train_adv,attack,fwd,attack_fix,train_adv_fix
# 7. Attacks: advtf PGD vs minimal loops vs CleverHans, Foolbox, ART (PY must have the peers installed:
#    python3 -m venv /work/peers && /work/peers/bin/pip install -c constraints.txt -e . \
#      adversarial-robustness-toolbox cleverhans foolbox)
"$PY" benchmarks/bench_attacks.py --model cnn --n 2000 --batch 250 --rounds 4 \
  --impls advtf,min_unrolled,min_range,min_clip_first,grad,cleverhans,foolbox,art --out "$OUT/attacks_cnn_after"
"$PY" benchmarks/bench_attacks.py --model resnet --width 1.0 --n 250 --batch 250 --rounds 4 --norms linf \
  --impls advtf,min_unrolled,grad,cleverhans --out "$OUT/attacks_resnet_after"
# 8. Every attack of the suite through the CLI on one Fashion-MNIST model (Table A1-style)
ADVTF="$(dirname "$PY")/advtf" benchmarks/attack_table.sh "${TMPDIR:-/tmp}/advtf-attack-table" > "$OUT/attack_table.md"
# 9. Peak RSS of attack and robustify, 10k to 200k images (memory, not time; writes ~3 GB under the work dir)
"$PY" benchmarks/bench_memory.py --work "${TMPDIR:-/tmp}/advtf-bench-memory" --json "$OUT/memory_after.json" \
  > "$OUT/memory_after.txt" 2> "$OUT/memory_after.log"
cat "$OUT/memory_after.txt"
# Long attacks (issue 17): C&W, EAD, Str, APGD, autoattack-lite vs their limit, the old loop form, XLA, ART and
# Foolbox (PY must have the peers: see step 7); RESULTS.md, "Long attacks"
"$PY" benchmarks/bench_long_attacks.py --models cnn --rounds 3 --batch-cnn 16 --peer-images 8 \
  --attacks cw9x100,ead_en,ead_l1,str,apgd_ce,apgd_dlr_t,aa_lite \
  --impls advtf,advtf_old,advtf_full,limit,limit_calls,art --peer-attacks apgd_dlr_t --art-attacks apgd_dlr_t \
  --traces 0 --out "$OUT/long_cnn"
"$PY" benchmarks/bench_long_attacks.py --models cnn --rounds 1 --batch-cnn 16 --attacks "" --traces 20 --trace-forms 10 \
  --trace-attacks cw9x100,apgd_ce --out "$OUT/long_cnn_traces_retimed"
"$PY" benchmarks/bench_long_attacks.py --models cnn --rounds 1 --batch-cnn 16 --peer-images 4 --attacks cw5x1000 \
  --impls advtf,limit,foolbox --peer-attacks cw5x1000 --traces 0 --out "$OUT/long_cnn_cw5x1000"
"$PY" benchmarks/bench_long_attacks.py --models cnn --rounds 3 --batch-cnn 64 --attacks cw5x1000 \
  --impls advtf,limit --traces 0 --out "$OUT/long_cnn_cw5x1000_16img"
"$PY" benchmarks/bench_long_attacks.py --models resnet --rounds 2 --batch-resnet 4 --scale-resnet 0.2 \
  --attacks cw9x100,ead_en,str,apgd_ce --impls advtf,advtf_full,limit,limit_calls --traces-resnet 0 \
  --out "$OUT/long_resnet"
# ART's C&W and EAD at equal budget, strength on the same images (ART takes ~8 min per call here)
"$PY" benchmarks/bench_long_attacks.py --models cnn --rounds 1 --batch-cnn 16 --peer-images 8 --attacks cw9x100,ead_en \
  --impls advtf,art --peer-attacks cw9x100,ead_en --art-attacks cw9x100,ead_en --traces 0 --out "$OUT/long_cnn_art_strength"
