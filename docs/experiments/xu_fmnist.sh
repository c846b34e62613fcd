#!/usr/bin/env bash
# Evidence for issue 4 (Xu et al. 2019: CAM, IS, PSR, refined attacks, activation
# bias) on Fashion-MNIST at a CPU budget, with the ResNet-18 (width 1/8) standard and Linf-robust
# models of docs/experiments/local_properties_fmnist.sh (runs/local/std, runs/local/adv).
# Outputs go to runs/xu/ (git-ignored); the tables and figures are in docs/xu_fmnist.md.
#   bash docs/experiments/xu_fmnist.sh
set -euo pipefail
command -v advtf >/dev/null || source .venv/bin/activate
OUT=runs/xu
MODELS="runs/local/std runs/local/adv"
NICE="nice -n 10"
DATA="--dataset fashion_mnist --quiet --overwrite"
# The paper's four attacks, targeted at random classes, with its confidence kappa = 1 (Appendix 1).
declare -A ATTACKS=(
  [ifgsm]="--attack ifgsm --norm linf --eps 0.1 --steps 10"
  [cw]="--attack cw --norm l2 --eps 3 --steps 50 -O search_steps=4 -O confidence=1"
  [ead]="--attack ead --norm l1 --eps 30 --steps 50 -O search_steps=4 -O confidence=1"
  [str]="--attack str --norm linf --eps 0.2 --steps 50 -O search_steps=4 -O confidence=1"
)
for name in ifgsm cw ead str; do
  # Table 2 and Figure 3/A1: CAMs and interpretability scores, both models.
  $NICE advtf cam $MODELS $DATA --test-subset 300 ${ATTACKS[$name]} --targeted --examples 4 --out $OUT/cam-$name
  # Table 1, A1 and Figures 2, 4, 6, A6: grid sensitivity, PSR, refined attacks (standard model;
  # 4x4 grids = 49 per 28x28 image).
  $NICE advtf psr runs/local/std $DATA --test-subset 150 ${ATTACKS[$name]} --targeted --grid 4 \
    --refine s1 --refine s2 --examples 3 --out $OUT/psr-$name
done
# Figure A8 (activation bias per layer, four attacks) and Figure 9/A9 (activation maps, both models).
$NICE advtf response $MODELS $DATA --test-subset 300 ${ATTACKS[ifgsm]} \
  --also-attack cw:l2:3:50 --also-attack ead:l1:30:50 --also-attack str:linf:0.2:50 \
  --activation-maps layer2 --out $OUT/activation-bias
