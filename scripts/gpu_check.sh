#!/usr/bin/env bash
# One device session: CUDA tests, every command on --device cuda, ground truth for memory/profile.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"
mv() { echo "+ modelviz $*"; python3 -m modelviz "$@"; echo "exit $?"; }
{
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -15
mv summary vgg16 3x224x224 --device cuda
mv summary resnet18 --device cuda --dtype float16 --json | head -c 600; echo
mv summary hf:gpt2 --device cuda --depth 1
mv summary vit_b_16 --device cuda --depth 1
mv activations resnet18 --layer conv1 --layer layer4 --device cuda -o $OUT/acts
mv export-onnx resnet18 --device cuda -o /tmp/r18.onnx
mv graph resnet18 --device cuda -o /tmp/r18.dot; head -c 300 /tmp/r18.dot; echo
mv report resnet18 --device cuda -o /tmp/report; ls /tmp/report
mv summary resnet18 --device cuda:3
mv summary resnet18 --device mps
} 2>&1 | tee $OUT/cli.log
python3 scripts/gpu_truth.py $OUT/truth.json 2>&1 | tee $OUT/truth.log
timeout 110 python3 -m pytest -q -p no:cacheprovider -n 14 tests -x -q --ignore=tests/test_cuda.py 2>&1 | tail -40 > $OUT/tests_torch211.log
tail -5 $OUT/tests_torch211.log
