#!/usr/bin/env bash
# The bench_backends cases on CUDA: the TT-matrix layer against tltorch and nn.Linear, all
# gradients through tnc.torch.contract against torch autograd, CP-ALS on torch CUDA tensors
# against numpy, and (when cupy is installed) Network.grad on cupy arrays; then the torch
# tests on the GPU. Prints the device and the ratios. Without a GPU: a message and exit 0.
#
#     bash bench/gpu_check.sh            # REPEATS=9 by default
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False or torch missing); nothing to check"
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PY" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name())"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} \
    MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
"$PY" bench/bench_backends.py --device cuda --repeats "${REPEATS:-9}" --only layer,grads,als,cupy
"$PY" -m pytest -q -p no:cacheprovider tests/test_autodiff.py tests/test_layer.py -k cuda
