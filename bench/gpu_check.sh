#!/usr/bin/env bash
# The bench_backends cases on CUDA: the TT-matrix layer against tltorch and nn.Linear, all
# gradients through tnc.torch.contract against torch autograd, CP-ALS on torch CUDA tensors
# (native sweeps and the numpy conversion) against numpy, and (when cupy is installed)
# Network.grad on cupy arrays; then native ALS on CUDA checked against numpy and the torch
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
# native CP-ALS on CUDA under the default policy (backend="auto": the sweeps on the device,
# tnc/fitting/native.py): tensors stay on cuda in their dtype, and equal the numpy fit
"$PY" - <<'PYEOF'
import numpy as np, torch, tnc
net = tnc.library("cp", I=30, J=25, K=20, R=4)
data = net.contract(net.random(seed=1))
data = data + 0.01 * np.random.default_rng(2).standard_normal(data.shape)
reference = tnc.fit(net, data, "als", max_iter=30, tol=0, progress=False)
for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-3)):
    result = tnc.fit(net, torch.tensor(data, dtype=dtype, device="cuda"), "als",
                     max_iter=30, tol=0, progress=False)
    assert all(t.device.type == "cuda" and t.dtype == dtype for t in result.tensors.values())
    gap = max(float((result.tensors[k].double().cpu() - torch.from_numpy(v)).abs().max())
              / float(np.abs(v).max()) for k, v in reference.tensors.items())
    print(f"native ALS on cuda {dtype}: relative gap to numpy {gap:.1e} (allowed {tol})")
    assert gap < tol, gap
PYEOF
"$PY" -m pytest -q -p no:cacheprovider tests/test_autodiff.py tests/test_layer.py -k cuda
