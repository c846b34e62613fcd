#!/usr/bin/env bash
# Evidence for issue 5 (local properties of adversarial examples, anonymous ICLR 2022 submission) on Fashion-MNIST
# at a CPU budget. Outputs go to runs/local/ (git-ignored); the measured tables and figures are
# in docs/local_properties_fmnist.md. Run from the repository root with .venv active:
#   bash docs/experiments/local_properties_fmnist.sh [train|analyse|sweep|all]
set -euo pipefail
command -v advtf >/dev/null || source .venv/bin/activate
OUT=runs/local
STAGE=${1:-all}
NICE="nice -n 10"
DATA="--dataset fashion_mnist"
# The training recipe (small budget): ResNet-18 at width 1/8 (conv1 has 8 kernels), 10,000
# training images, 4 epochs of Adam 2e-3 with a cosine schedule; one checkpoint per epoch.
TRAIN="--model resnet18 --width 0.125 --train-subset 10000 --test-subset 1000 --epochs 4 \
  --optimizer adam --lr 2e-3 --schedule cosine --batch-size 128 --eval-steps 10 --save-every-epoch --quiet"
ROBUST="--robust --attack-steps 5"
THREAT="--norm linf --eps 0.1"
ATTACK="--attack pgd --norm linf --eps 0.1 --steps 10"
ANALYSE="$DATA --test-subset 500 --quiet --overwrite"

if [[ $STAGE == train || $STAGE == all ]]; then
  $NICE advtf train $DATA $TRAIN $THREAT --weight-decay 5e-4 --out $OUT/std --overwrite
  $NICE advtf train $DATA $TRAIN $THREAT $ROBUST --weight-decay 5e-4 --out $OUT/adv --overwrite
  # The paper's weight-decay sweep (Figure 5/9: 1e-4 ... 1e-3) at two more points.
  for wd in 1e-4 1e-3; do
    $NICE advtf train $DATA $TRAIN $THREAT $ROBUST --weight-decay $wd --out $OUT/adv-wd$wd --overwrite
  done
fi

if [[ $STAGE == analyse || $STAGE == all ]]; then
  # Figures 1, 2, 6: filtered / swapped accuracy and mean spectra, standard vs robust.
  $NICE advtf frequency $OUT/std $OUT/adv $ANALYSE $ATTACK --out $OUT/frequency
  # Figures 3, 8 (PGD) and 7 (FGSM): perturbations, robust model first.
  $NICE advtf perturbations $OUT/adv $OUT/std $ANALYSE $ATTACK --only successful --out $OUT/perturbations
  $NICE advtf perturbations $OUT/adv $OUT/std $ANALYSE $ATTACK --only failed --out $OUT/perturbations-failed
  $NICE advtf perturbations $OUT/adv $OUT/std $ANALYSE --attack fgsm --norm linf --eps 0.1 --only all \
    --out $OUT/perturbations-fgsm
  # Tables 1-5: both models, own and transferred examples, PGD-10 and FGSM, successful/failed splits.
  $NICE advtf response $OUT/std --compare $OUT/adv --adv-from $OUT/std --adv-from $OUT/adv --also-attack fgsm \
    $ANALYSE $ATTACK --out $OUT/response
fi

if [[ $STAGE == sweep || $STAGE == all ]]; then
  # Figures 5, 9: per-epoch response differences of the weight-decay sweep (fewer images: 12 checkpoints).
  $NICE advtf response --checkpoints $OUT/adv-wd1e-4 --checkpoints $OUT/adv --checkpoints $OUT/adv-wd1e-3 \
    $DATA --test-subset 200 --quiet --overwrite $ATTACK --out $OUT/response-epochs
  # Figure 5a: kernel smoothness per layer and over epochs.
  $NICE advtf kernels $OUT/std $OUT/adv --checkpoints $OUT/std --checkpoints $OUT/adv-wd1e-4 \
    --checkpoints $OUT/adv --checkpoints $OUT/adv-wd1e-3 --quiet --overwrite --out $OUT/kernels
fi
