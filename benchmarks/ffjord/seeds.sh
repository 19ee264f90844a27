#!/usr/bin/env bash
# FFJORD across seeds (issue #19): the 2-D toys with 3 seeds (adaptive training), reduced MNIST seed 2.
# Resumable: run it again after an interruption. Then: python benchmarks/ffjord/seeds_table.py
set -euo pipefail
OUT="${1:-runs/ffjord-seeds}"
for ds in 8gaussians pinwheel; do
  for s in 0 1 2; do
    nice -n 10 taynode study ffjord-table2 --preset cpu --dataset "$ds" --fixed-steps --seed "$s" \
      --out "$OUT/$ds-seed$s" --resume --no-progress
  done
done
# seeds 0 and 1 of reduced MNIST: benchmarks/ffjord/mnist_results.json, mnist_seed1_results.json (copy them to
# $OUT/mnist-seed0/results.json and $OUT/mnist-seed1/results.json for the table)
XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" nice -n 10 taynode study ffjord-table2 \
  --preset mnist --regs none r2 --fixed-steps --seed 2 --out "$OUT/mnist-seed2" --resume --no-progress
