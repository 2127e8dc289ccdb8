#!/usr/bin/env bash
# A device session: the CUDA tests (ONNX from CUDA, memory and profile on CUDA), memory's figures there, and the profile hooks' cost at batch 1; carry .whl (graphviz, torchviz, torchinfo wheels).
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
python3 -m pytest -q -p no:cacheprovider tests/test_profile_cuda.py tests/test_memory.py -k "cuda or h100" 2>&1 | tail -8
# the profile's hooks at batch 1, where resnet50 is launch-bound: every module, then depth 1 only
python3 - <<'PY' 2>&1 | tee $OUT/profile_cuda.txt
from modelviz import api
for depth in (None, 2, 1):
    p = api.profile("resnet50", "3x224x224", device="cuda", runs=30, time_depth=depth)
    rows = sum(m.total_ms for m in p.modules.values() if m.depth == 1)
    print(f"resnet50 b1 time_depth={depth}: forward {p.total_ms:.3f} ms, bare {p.bare_forward_ms:.3f} ms, hooks {p.hook_overhead * 100:+.1f}%, depth-1 rows {rows / p.total_ms:.3f} of the total", flush=True)
PY
# a cuDNN LSTM: what the plan follows against what the allocator measured (never tried on a GPU)
python3 - <<'PY' 2>&1 | tee $OUT/lstm_cuda.txt
from modelviz import api
MB = 2**20
for opt in ("adam", "none"):
    plan = api.memory("tests.models_for_memory:Recurrent", "100x64", batch_size=32, optimizer=opt, device="cuda")
    part = plan.training if opt != "none" else plan.inference
    print(f"LSTM b32 {opt}: followed {part.peak_bytes/MB:.1f} MiB, measured {part.measured_peak_bytes/MB:.1f} MiB, ratio {part.peak_bytes/part.measured_peak_bytes:.3f}", flush=True)
PY
# placeholder weights, the torch._dynamo.utils stand-in and the quick exit on this torch/torchvision
python3 -m pytest -q -p no:cacheprovider tests/test_placeholders.py tests/test_process.py 2>&1 | tail -5
