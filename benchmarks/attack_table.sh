#!/usr/bin/env bash
# Every attack of the suite against one standard Fashion-MNIST model, through the CLI:
# success rate, accuracy after, and median l0/l1/l2/linf of delta (cf. Xu et al. 2019, Table A1).
# Usage: benchmarks/attack_table.sh [OUTDIR]   (about 10 minutes on 2 cores)
set -euo pipefail
OUT=${1:-runs/attack-table}
ADVTF=${ADVTF:-advtf}
mkdir -p "$OUT"
DATA=(--dataset fashion_mnist --test-subset 200 --seed 0 --quiet)
[ -e "$OUT/std/model.keras" ] || "$ADVTF" train --dataset fashion_mnist --model resnet20v2 --width 0.25 \
  --train-subset 5000 --test-subset 500 --epochs 3 --batch-size 128 --optimizer adam --lr 1e-3 \
  --weight-decay 0 --eval-steps 10 --eps 1.0 --quiet --out "$OUT/std"
run() {  # name, then advtf attack options
  local name=$1; shift
  [ -e "$OUT/$name/results.json" ] || "$ADVTF" attack "$OUT/std" "${DATA[@]}" "$@" --out "$OUT/$name" >/dev/null
}
run fgsm-linf     --attack fgsm  --norm linf --eps 0.1
run ifgsm-linf    --attack ifgsm --norm linf --eps 0.1 --steps 10
run pgd-linf      --attack pgd   --norm linf --eps 0.1 --steps 20
run pgd-l2        --attack pgd   --norm l2   --eps 2.0 --steps 20
run cw-l2         --attack cw    --norm l2   --eps 2.0 --steps 100
run ead-l1        --attack ead   --norm l1   --eps 30  --steps 100 -O decision_rule=l1
run str-linf      --attack str   --norm linf --eps 0.1 --steps 100
run apgd-ce-linf  --attack apgd-ce  --norm linf --eps 0.1 --steps 20
run apgd-dlr-linf --attack apgd-dlr --norm linf --eps 0.1 --steps 20
run aa-lite-linf  --attack autoattack-lite --norm linf --eps 0.1 --steps 20
run pgd-linf-next --attack pgd --norm linf --eps 0.1 --steps 20 --targeted --target-mode next
run cw-l2-next    --attack cw  --norm l2   --eps 2.0 --steps 100 --targeted --target-mode next
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = ["| run | attack | norm | eps | steps | success | acc. before | acc. after | med. l0 | med. l1 | med. l2 | med. linf | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for d in sorted(p for p in out.iterdir() if (p / "results.json").exists() and p.name != "std"):
    r = json.loads((d / "results.json").read_text())
    m = json.loads((d / "manifest.json").read_text())
    n = {k: r["norms"][k]["median"] for k in ("l0", "l1", "l2", "linf")}
    rows.append(f"| {d.name} | {r['attack']} | {r['threat']['norm']} | {r['threat']['eps']:g} | {r['threat']['steps']} "
                f"| {r['success_rate']:.3f} | {r['clean_accuracy']:.3f} | {r['adversarial_accuracy']:.3f} | {n['l0']:.0f} "
                f"| {n['l1']:.2f} | {n['l2']:.3f} | {n['linf']:.3f} | {m['wall_seconds']:.0f} |")
(out / "table.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
