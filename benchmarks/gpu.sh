#!/usr/bin/env bash
# The GPU checks, as one script for a machine with one NVIDIA GPU, JAX with CUDA and
# PyTorch with CUDA: the default test suite on the GPU, training throughput against
# PyTorch on the same GPU, and time to 99% test accuracy (configs/mnist_fast.py).
#
#   bash benchmarks/gpu.sh OUT_DIR MNIST_DIR
#
# Install cnnjax's dependencies that the machine lacks first (without network: as wheels
# brought along, e.g. ml_collections, clu, tensorboard, tensorflow-datasets, grain,
# array_record; then `pip install --no-deps -e .`). Each step's output goes to OUT_DIR (device.txt, tests.log, throughput.txt,
# time_to_accuracy.txt); the last lines of the last two say which goals are met.
set -uo pipefail
out=${1:?usage: benchmarks/gpu.sh OUT_DIR MNIST_DIR}
data=${2:?usage: benchmarks/gpu.sh OUT_DIR MNIST_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 CNNJAX_TEST_MNIST_DIR="$data" CNNJAX_CACHE_DIR=$(mktemp -d)
{ nvidia-smi -L; python -c "import jax; print(jax.__version__, jax.devices())"; } 2>&1 | tee "$out/device.txt"
timeout 300 python -m pytest -q -x -p no:cacheprovider 2>&1 | tail -30 > "$out/tests.log"
echo "tests: $(tail -1 "$out/tests.log")"
timeout 240 python benchmarks/throughput.py --torch-device cuda --rounds 2 2>&1 | tee "$out/throughput.txt"
timeout 300 python benchmarks/time_to_accuracy.py --data-dir "$data" --configs mnist_fast \
    --max-epochs 3 2>&1 | tee "$out/time_to_accuracy.txt"
