#!/usr/bin/env bash
# Evidence for issue 6 (Siddiqui & Breuel 2021: block-wise retraining, layer
# reinitialisation, feature distributions) on Fashion-MNIST at a CPU budget, with the ResNet-18
# (width 1/8) standard and Linf-robust models of docs/experiments/local_properties_fmnist.sh.
# Outputs go to runs/retrain/ and runs/features/ (git-ignored); results in docs/siddiqui_fmnist.md.
#   bash docs/experiments/siddiqui_fmnist.sh
set -euo pipefail
command -v advtf >/dev/null || source .venv/bin/activate
NICE="nice -n 10"
# Figures 2-4: adversarial retraining before/after every cut-off of the standard model (fast
# adversarial training, 2 epochs per cell, PGD-20 evaluation; the paper used PGD-200).
# The sweep is long: an interrupted run (its .partial) is resumed, a complete one redone.
CUTOFF=runs/retrain/std-cutoff
if [ -d "$CUTOFF.partial" ]; then AGAIN=--resume; else AGAIN=--overwrite; fi
$NICE advtf retrain runs/local/std --dataset fashion_mnist --mode adversarial --sweep cutoff --fast \
  --norm linf --eps 0.1 --train-subset 8000 --test-subset 500 --epochs 2 --batch-size 128 \
  --optimizer sgd --lr 0.1 --schedule cosine --weight-decay 5e-4 --eval-steps 20 --quiet \
  --out "$CUTOFF" "$AGAIN"
# Figure 7: reinitialise one module of the robust model at a time, no retraining.
$NICE advtf retrain runs/local/adv --dataset fashion_mnist --reinit-only --norm linf --eps 0.1 \
  --test-subset 1000 --eval-steps 20 --quiet --out runs/retrain/adv-reinit --overwrite
# Figure 8: per-position feature vectors of natural vs PGD images, MMD / C2ST and t-SNE.
for seed in 0 1; do
  $NICE advtf features runs/local/std runs/local/adv --dataset fashion_mnist --images 300 --seed $seed \
    --attack pgd --norm linf --eps 0.1 --steps 10 --modules m1,m2,m3,m4 --method tsne --quiet --overwrite \
    --out runs/features/fmnist-tsne-seed$seed
done
