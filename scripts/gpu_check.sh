#!/usr/bin/env bash
# A device session: the CUDA tests (ONNX from CUDA, memory on CUDA) and memory's figures there; carry .whl (graphviz, torchviz, torchinfo wheels).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -x 2>&1 | tail -15
python3 - <<'PY' 2>&1 | tee $OUT/memory_cuda.txt
import torch
from modelviz import api
MB = 2**20
api.summary("resnet18", "3x224x224", device="cuda")
for model, sizes, b, opt, amp, extra in [
        ("resnet50", "3x224x224", 32, "adam", None, {}),
        ("vit_b_16", "3x224x224", 16, "adamw", "bf16", {}),
        ("hf:gpt2@causal-lm", "int64:512", 4, "adamw", None, {"forward_args": {"use_cache": False}})]:
    cuda = api.memory(model, sizes, batch_size=b, optimizer=opt, amp=amp, device="cuda", **extra)
    meta = api.memory(model, sizes, batch_size=b, optimizer=opt, amp=amp, device="meta", **extra)
    t, i = cuda.training, cuda.inference
    print(f"{model} b{b} {opt} {amp}: training cuda-followed {t.peak_bytes/MB:.1f} measured {t.measured_peak_bytes/MB:.1f} meta {meta.training.peak_bytes/MB:.1f} | inference followed {i.peak_bytes/MB:.1f} measured {i.measured_peak_bytes/MB:.1f} meta {meta.inference.peak_bytes/MB:.1f}", flush=True)
print(torch.cuda.get_device_properties(0).total_memory, torch.cuda.get_device_name())
PY
python3 -m modelviz memory vit_b_16 -b 16 --device cuda --optimizer adamw 2>&1 | head -12
