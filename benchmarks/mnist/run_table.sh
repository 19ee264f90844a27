#!/usr/bin/env bash
# The small-preset table of benchmarks/mnist/README.md: unregularized, R2 and R3 at two λ each, RNODE at one,
# one run after another (each about 5-10 min on 2 CPU cores), then the table.
# Usage: benchmarks/mnist/run_table.sh [RUNS_DIR]   (default runs/mnist-small)
set -euo pipefail
out=${1:-runs/mnist-small}
mkdir -p "$out"
run() {  # name reg lam
  if [ -f "$out/$1/results.json" ]; then echo "skip $1 (done)"; return; fi
  nice -n 10 taynode train mnist --preset small --reg "$2" --lam "$3" --seed 0 --out "$out/$1" \
    --no-progress $( [ -f "$out/$1/checkpoint.npz" ] && echo --resume ) > "$out/$1.log" 2>&1
  echo "done $1"
}
run none none 0
run r2-lam10 r2 10
run r3-lam100 r3 100
run r2-lam1000 r2 1000
run r3-lam10000 r3 10000
run rnode-lam0.01 kinetic+jacobian 0.01
python benchmarks/mnist/table.py "$out"
