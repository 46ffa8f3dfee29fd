#!/usr/bin/env bash
# Copying data segments against copy-on-write images, one command:
# `bash bench/copy_threshold.sh [MODULES] [N] [KIB,KIB,...]`.
# Builds the `copy_threshold` example of wasmops-runtime and prints, for each
# data size, the mean store + instantiate + call + drop cycle on a pooled
# engine with images and on one that copies, for one module and for MODULES
# distinct modules round-robin (1,000 and 20,000 cycles by default), twice.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p wasmops-runtime --example copy_threshold
for _ in 1 2; do
  target/release/examples/copy_threshold "${1:-1000}" "${2:-20000}" "${3:-4,8,16,32,64,128}"
done
