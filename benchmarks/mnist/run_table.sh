#!/usr/bin/env bash
# The small-preset table of benchmarks/mnist/README.md: unregularized, R2 and R3 at two λ each, R3 at a λ
# that diverges, RNODE at one; one run after another (each about 5-10 min on 2 CPU cores), then the table.
# A run that diverges ("training diverged" from the training loop; its last good checkpoint stays) is
# marked with RUN/diverged.json and shown as a diverged row; the other runs go on. Any other failure
# is reported and makes the script exit non-zero at the end (after the table).
# Usage: benchmarks/mnist/run_table.sh [RUNS_DIR]   (default runs/mnist-small)
set -uo pipefail
out=${1:-runs/mnist-small}
mkdir -p "$out"
failed=0
run() {  # name reg lam
  if [ -f "$out/$1/results.json" ]; then echo "skip $1 (done)"; return; fi
  if [ -f "$out/$1/diverged.json" ]; then echo "skip $1 (diverged before)"; return; fi
  if nice -n 10 taynode train mnist --preset small --reg "$2" --lam "$3" --seed 0 --out "$out/$1" \
      --no-progress $( [ -f "$out/$1/checkpoint.npz" ] && echo --resume ) > "$out/$1.log" 2>&1; then
    echo "done $1"
  elif grep -q "training diverged" "$out/$1.log"; then
    mkdir -p "$out/$1"
    grep -m1 -o "training diverged.*" "$out/$1.log" |
      python -c 'import json, sys; print(json.dumps(dict(reg=sys.argv[1], lam=float(sys.argv[2]), error=sys.stdin.read().strip())))' "$2" "$3" \
      > "$out/$1/diverged.json"
    echo "diverged $1 (see $out/$1.log)"
  else
    echo "FAILED $1 (see $out/$1.log)"
    failed=1
  fi
}
run none none 0
run r2-lam10 r2 10
run r3-lam100 r3 100
run r2-lam1000 r2 1000
run r3-lam10000 r3 10000
run r3-lam100000 r3 100000
run rnode-lam0.01 kinetic+jacobian 0.01
python benchmarks/mnist/table.py "$out"
exit $failed
