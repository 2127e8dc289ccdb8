"""``modelviz memory``: simulated peaks against what real steps measured.

Two oracles from outside the simulation: an H100's ``max_memory_allocated`` over real steps
(tests/data/h100_memory.json, written by scripts/gpu_truth.py on torch 2.11 with cuDNN 9.19; the
predictions here run on meta, on this machine), and the peak resident memory of a fresh CPU
process running the same step (tests/memory_truth.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch
from torch import nn

from modelviz import api
from modelviz.errors import SpecError
from modelviz.features.memory import simulate
from modelviz.features.memory.budget import parse_budget
from tests.helpers import ROOT, Cli
from tests.memory_truth import MEASURING_ENV, allocator_peak
from tests.models_for_memory import MODELS, SIZES

pytestmark = pytest.mark.xdist_group("memory")  # the CPU measurements want a quiet core

H100 = json.loads((ROOT / "tests" / "data" / "h100_memory.json").read_text())
MB = 2**20


def _h100(name: str, optimizer: str, amp: str | None) -> dict[str, Any]:
    for record in H100["memory"]:
        if (record.get("name"), record.get("optimizer"), record.get("amp")) == (
                name, optimizer, str(amp and {"bf16": "torch.bfloat16"}[amp])):
            found: dict[str, Any] = record
            return found
    raise KeyError(name)


def _measured_training(record: dict[str, Any]) -> int:
    """The second step's peak: the steady state, optimizer state held throughout."""
    step = record["steps"][1]
    peak: int = max(step["forward_peak"], step["backward_peak"], step.get("step_peak", 0))
    return peak


# (model, sizes, batch, optimizer, amp, tolerance). Tolerances are what this simulation reaches,
# not slack: the remaining gap is cuDNN's and cuBLAS's workspaces, which CUDA allocates inside
# kernels (through the caching allocator, so max_memory_allocated sees them) and no tensor shows.
CASES = [
    ("resnet50", "3x224x224", 32, "adam", None, 0.03),
    ("resnet50", "3x224x224", 32, "momentum", None, 0.03),
    ("resnet50", "3x224x224", 32, "adamw", "bf16", 0.03),
    ("vit_b_16", "3x224x224", 16, "adamw", None, 0.03),
    ("vit_b_16", "3x224x224", 16, "adamw", "bf16", 0.04),
    ("mobilenet_v3_small", "3x224x224", 64, "adam", None, 0.03),
    ("gpt2", "int64:512", 4, "adamw", None, 0.05),
    ("gpt2", "int64:512", 4, "adamw", "bf16", 0.03),
]


@pytest.mark.parametrize(("name", "sizes", "batch", "optimizer", "amp", "tolerance"), CASES,
                         ids=[f"{c[0]}-{c[3]}-{c[4] or 'fp32'}" for c in CASES])
def test_meta_plan_matches_an_h100(name: str, sizes: str, batch: int, optimizer: str,
                                   amp: str | None, tolerance: float) -> None:
    """Planned on meta, here, against the same step measured on an H100. GPT-2 is
    transformers' GPT2LMHeadModel at its default config, as the measurement built it; the
    measured inference peak there was taken with the optimizer's state still held, which is
    subtracted (the record's inference_start minus the weights and inputs)."""
    model = "hf:gpt2@causal-lm" if name == "gpt2" else name
    extra: dict[str, Any] = {"forward_args": {"use_cache": False}} if name == "gpt2" else {}
    plan = api.memory(model, sizes, batch_size=batch, optimizer=optimizer, amp=amp,
                      device="meta", **extra)
    record = _h100(name, optimizer, amp)
    assert plan.training is not None
    measured = _measured_training(record)
    assert plan.training.peak_bytes == pytest.approx(measured, rel=tolerance), (
        plan.training.peak_bytes / MB, measured / MB)
    held = record["inference_start"] - record["after_setup"]
    inference = record["inference_peak"] - held
    assert plan.inference.peak_bytes == pytest.approx(inference, rel=0.06), (
        plan.inference.peak_bytes / MB, inference / MB)
    # the parts that need no measuring are exact, up to CUDA's 512-byte blocks (which add 0.3%
    # to mobilenet_v3_small's many small tensors)
    assert plan.training.parameters_bytes == pytest.approx(record["params_bytes"], rel=5e-3)
    states = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}[optimizer]
    assert plan.training.optimizer_bytes == pytest.approx(states * record["params_bytes"],
                                                          rel=5e-3)


def _cpu_truth(name: str, batch: int, optimizer: str) -> int:
    env = {**os.environ, **MEASURING_ENV, "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "memory_truth.py"), name,
                           str(batch), optimizer], capture_output=True, text=True, env=env,
                          timeout=300, check=True)
    measured: int = json.loads(proc.stdout.strip().splitlines()[-1])["measured_peak_bytes"]
    return measured


def _planned(name: str, batch: int, optimizer: str) -> int:
    torch.manual_seed(0)
    model, _ = MODELS[name]()
    plan = api.memory(model, SIZES[name], batch_size=batch, optimizer=optimizer, device="cpu")
    return plan.training.peak_bytes if plan.training else plan.inference.peak_bytes


# (model, batch, optimizer, tolerance against torch's CPU allocator). Planned / allocator:
# resnet18 0.987, GPT-2 1.000, resnet18 inference 1.000; the LSTM 0.968 in training and 0.974
# in inference, with oneDNN's RNN scratch (features/memory/kernels.py); without it they were
# 0.86 and 0.43, since that scratch is taken through torch's allocator inside one op, where no
# tensor shows it.
ALLOCATOR_CASES = [("resnet18", 8, "adam", 0.03), ("gpt2-small", 8, "adamw", 0.02),
                   ("resnet18", 8, "none", 0.01), ("lstm", 32, "adam", 0.05),
                   ("lstm", 32, "none", 0.05)]


@pytest.mark.parametrize(("name", "batch", "optimizer", "tolerance"), ALLOCATOR_CASES)
def test_cpu_plan_matches_torchs_cpu_allocator(name: str, batch: int, optimizer: str,
                                               tolerance: float) -> None:
    """Against every allocation and free torch's CPU allocator made over the same two steps
    (torch.profiler's memory timeline): the CPU's max_memory_allocated, kernels' own
    temporaries included."""
    measured = allocator_peak(name, batch, optimizer)
    planned = _planned(name, batch, optimizer)
    assert planned == pytest.approx(measured, rel=tolerance), (planned / MB, measured / MB)


# The bound, 10%, for a CNN, a transformer and an RNN, training and inference. Planned /
# resident, measured under MEASURING_ENV (repeats within 0.1%): resnet18 training 0.963 and
# inference 1.000, GPT-2 0.981, the LSTM 0.932 and 0.970. The LSTM's last 7% are oneDNN's own
# mallocs inside the RNN kernels, which torch's allocator (above) does not see either. Without
# MEASURING_ENV the two oracles disagreed by up to 35% on these models; resident memory was then
# glibc's caching and untouched pages, not what the process held (see tests/memory_truth.py).
@pytest.mark.parametrize(("name", "batch", "optimizer"), [
    ("resnet18", 8, "none"), ("resnet18", 8, "adam"), ("gpt2-small", 8, "adamw"),
    ("lstm", 32, "adam"), ("lstm", 32, "none"),
])
def test_cpu_plan_matches_a_real_processs_resident_memory(name: str, batch: int,
                                                          optimizer: str) -> None:
    """The same model and inputs in a fresh process: peak RSS of two real steps (or one no-grad
    pass) above the baseline, plus the weights and inputs the baseline held."""
    measured = _cpu_truth(name, batch, optimizer)
    planned = _planned(name, batch, optimizer)
    assert planned == pytest.approx(measured, rel=0.10), (planned / MB, measured / MB)


def test_second_step_derived_on_meta_equals_two_simulated_steps() -> None:
    """On meta one step is simulated and the second derived from it; both ways agree."""
    plan = api.prepare("vit_b_16", batch_size=16, device="meta")
    args, kwargs = plan.inputs.args, plan.inputs.kwargs
    one, _ = simulate.training(plan.model, args, kwargs, plan.device, optimizer="adamw",
                               steps=1)
    two, _ = simulate.training(plan.model, args, kwargs, plan.device, optimizer="adamw",
                               steps=2)
    assert one.peak_bytes == pytest.approx(two.peak_bytes, rel=1e-3)
    assert one.peak_phase == two.peak_phase == "backward (step 2)"


def test_fit_is_the_largest_batch_that_fits() -> None:
    budget = 1_500_000_000
    plan = api.memory("resnet18", batch_size=1, device="meta", optimizer="sgd", fit="1.5GB")
    assert plan.fit is not None and plan.fit.budget_bytes == budget
    best = plan.fit.max_batch_size
    assert best > 1
    fits = api.memory("resnet18", batch_size=best, device="meta", optimizer="sgd").training
    over = api.memory("resnet18", batch_size=best + 1, device="meta", optimizer="sgd").training
    assert fits is not None and over is not None
    assert fits.peak_bytes <= budget < over.peak_bytes
    assert plan.fit.peak_bytes == fits.peak_bytes and plan.fit.next_peak_bytes == over.peak_bytes


FIRST_PLAN = """
import json, sys
from modelviz import api
plans = [api.memory("resnet18", "3x64x64", batch_size=4, device="meta").to_dict()
         for _ in range(2)]
print(json.dumps([sys.modules.get("torch._dynamo") is not None, *plans]))
"""


def test_the_first_plan_in_a_process_is_the_second() -> None:
    """torch imports torch._dynamo lazily, at the first op through one of its wrappers; inside a
    followed pass that import held conv1's output live to the end of the pass, in the first
    plan of a process only (simulate.tracker_for imports it before). A fresh process, since
    this one has imported it long ago."""
    done = subprocess.run([sys.executable, "-c", FIRST_PLAN], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=True)
    imported, first, second = json.loads(done.stdout.strip().splitlines()[-1])
    assert imported
    assert first == second
    assert first["inference"]["peak_bytes"] == second["inference"]["peak_bytes"]


def test_batch_norm_on_one_value_per_channel(cli: Cli) -> None:
    """A training step at batch 1 fails in torch itself (inception_v3 does the same): the error
    names the batch size, not SIZES, and --fit searches from batch 2, the least that trains."""
    spec = "tests.models_for_memory:PooledNorm"
    failed = cli("memory", spec, "3x16x16", "--device", "meta")
    assert failed.exit_code == 2 and len(failed.stderr.strip().splitlines()) == 1
    assert failed.stderr.rstrip().endswith(
        "A BatchNorm layer in training mode needs more than one value per channel: give "
        "--batch-size 2 or more.")
    budget = 1_000_000
    data = json.loads(cli("memory", spec, "3x16x16", "--device", "meta", "-b", "2", "--fit",
                          "1MB", "--format", "json").stdout)
    best = data["fit"]["max_batch_size"]
    assert best >= 2
    fits = api.memory(spec, "3x16x16", batch_size=best, device="meta").training
    over = api.memory(spec, "3x16x16", batch_size=best + 1, device="meta").training
    assert fits is not None and over is not None
    assert fits.peak_bytes <= budget < over.peak_bytes
    # inference has no batch statistics: batch 1 is its least
    assert api.memory(spec, "3x16x16", device="meta", optimizer="none").inference.peak_bytes


def test_nothing_fits_names_the_activations_and_checkpointing(cli: Cli) -> None:
    """Batch 1 needs 5.40 MiB, of which one sample's saved activations are 2.70 MiB: without them
    it would fit 5 MB, so checkpointing is the lever worth naming; with it, batch 1 fits."""
    args = ["memory", "sample_models/llama.py:llama_tiny", "int64:128", "--device", "meta",
            "--optimizer", "adamw", "--fit", "5MB", "--format", "json"]
    data = json.loads(cli(*args).stdout)
    assert data["fit"]["max_batch_size"] == 0
    assert data["notes"] == ["nothing fits 5MB: one sample's activations saved for backward "
                             "take 2.70 MiB; --checkpointing keeps only each repeated block's "
                             "input"]
    saved = json.loads(cli(*args, "--checkpointing").stdout)
    assert saved["fit"]["max_batch_size"] >= 1 and not saved["notes"]
    # weights, not activations, in the way: no such advice
    small = json.loads(cli(*args[:-4], "--fit", "1MB", "--format", "json").stdout)
    assert small["fit"]["max_batch_size"] == 0 and not small["notes"]


@pytest.mark.parametrize(("name", "keys"), [
    ("maskrcnn_resnet50_fpn", {"boxes", "labels", "masks"}),
    ("keypointrcnn_resnet50_fpn", {"boxes", "labels", "keypoints"}),
    ("ssdlite320_mobilenet_v3_large", {"boxes", "labels"}),
])
def test_detection_targets_are_what_each_model_trains_on(name: str, keys: set[str]) -> None:
    from modelviz.core.inputs import training_targets

    with torch.device("meta"):  # only the heads are looked at
        import torchvision

        model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    images = torch.zeros(2, 3, 96, 128)
    targets = training_targets(model, (images,), {})["targets"]
    assert len(targets) == 2 and set(targets[0]) == keys
    assert targets[0]["boxes"].tolist() == [[32.0, 24.0, 96.0, 72.0]]
    if "masks" in keys:
        assert targets[0]["masks"].shape == (1, 96, 128) and targets[0]["masks"].sum() == 64 * 48
    if "keypoints" in keys:
        assert targets[0]["keypoints"].shape == (1, 17, 3)
    assert training_targets(nn.Linear(2, 2), (images,), {}) == {}
    assert training_targets(model, (images,), {"targets": []}) == {}


def test_a_detection_model_plans_training_on_made_up_targets() -> None:
    """torchvision's detection models refuse to run in training mode without targets."""
    options: dict[str, Any] = {"device": "cpu", "kwargs": {"min_size": 128, "max_size": 128}}
    plan = api.memory("fasterrcnn_mobilenet_v3_large_320_fpn", "3x128x128", optimizer="sgd",
                      **options)
    model = api.prepare("fasterrcnn_mobilenet_v3_large_320_fpn", "3x128x128", **options).model
    assert plan.training is not None
    assert plan.training.gradients_bytes == sum(p.numel() * 4 for p in model.parameters()
                                                if p.requires_grad)
    assert plan.training.activations_bytes > 0
    assert any("made-up targets" in note for note in plan.notes)


def test_checkpointing_the_blocks_frees_their_activations() -> None:
    kwargs: dict[str, Any] = {"kwargs": {"n_layer": 4}, "forward_args": {"use_cache": False}}
    plain = api.memory("hf:gpt2@causal-lm", "int64:512", batch_size=8, device="meta",
                       optimizer="adamw", **kwargs)
    saved = api.memory("hf:gpt2@causal-lm", "int64:512", batch_size=8, device="meta",
                       optimizer="adamw", checkpointing=True, **kwargs)
    assert plain.training is not None and saved.training is not None
    assert saved.training.checkpointed == [f"transformer.h.{i}" for i in range(4)]
    assert saved.training.activations_bytes < 0.3 * plain.training.activations_bytes
    assert saved.training.peak_bytes < plain.training.peak_bytes


def test_sharding_divides_what_is_split_and_gathers_one_block() -> None:
    plan = api.memory("hf:llama", "int64:512", device="meta", dtype="bfloat16",
                      optimizer="adamw", shard=8, kwargs={"num_hidden_layers": 2},
                      forward_args={"use_cache": False})
    training, sharding = plan.training, plan.sharding
    assert training is not None and sharding is not None
    assert sharding.block == "layers.0"
    assert sharding.block_bytes == 2 * (3 * 4096 * 11008 + 4 * 4096 * 4096 + 2 * 4096)
    # in each phase everything split shrinks 8 times; two blocks' parameters are gathered whole
    # (the running one and the prefetched one), in backward one block's full gradient too; the
    # activations stay whole, so once sharded another phase may peak
    assert sharding.training_peak_bytes == max(
        int(p.peak_bytes - 7 / 8 * (p.at.get("parameters", 0) + p.at.get("gradients", 0)
                                    + p.at.get("optimizer", 0))
            + (3 if p.phase.startswith("backward") else 2) * sharding.block_bytes)
        for p in training.phases)
    assert sharding.training_peak_bytes < training.peak_bytes / 2
    assert sharding.inference_peak_bytes == pytest.approx(
        plan.inference.peak_bytes - plan.inference.weights_bytes * 7 / 8
        + 2 * sharding.block_bytes, abs=1)


def test_parameter_bytes_are_exact_on_cpu_and_inference_frees_as_it_goes() -> None:
    plan = api.memory("resnet18", batch_size=2, device="cpu", optimizer="adam")
    assert plan.training is not None
    assert plan.training.parameters_bytes == 11_689_512 * 4
    assert plan.training.gradients_bytes == 11_689_512 * 4
    assert plan.training.optimizer_bytes == 2 * 11_689_512 * 4 + 62 * 4  # + Adam's step counters
    held = plan.inference.weights_bytes + plan.inference.inputs_bytes
    assert plan.inference.peak_bytes - held < plan.training.activations_bytes
    assert plan.per_module.parameters[""] == 11_689_512 * 4
    assert plan.per_module.activations[""] == plan.training.activations_bytes


@pytest.mark.parametrize(("text", "expected"), [
    ("80GB", 80 * 10**9), ("80GiB", 80 * 2**30), ("512MiB", 512 * 2**20),
    ("a100-40gb", 40_536 * 2**20), ("H100", 81_559 * 2**20)])
def test_budgets(text: str, expected: int) -> None:
    assert parse_budget(text)[0] == expected


@pytest.mark.parametrize("text", ["80", "80XB", "lots", "0GB"])
def test_bad_budgets_are_refused(text: str) -> None:
    with pytest.raises(SpecError):
        parse_budget(text)


def test_cli_json(cli: Cli) -> None:
    result = cli("memory", "resnet18", "-b", "2", "--device", "meta", "--optimizer", "adamw",
                 "--fit", "2GB", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["training"]) >= {"peak_bytes", "peak_phase", "parameters_bytes",
                                     "gradients_bytes", "optimizer_bytes", "activations_bytes"}
    assert data["inference"]["peak_bytes"] < data["training"]["peak_bytes"]
    assert data["max_batch_size"] == data["fit"]["max_batch_size"] > 2
    assert [row["name"] for row in data["layers"]][:3] == ["", "conv1", "bn1"]
    assert result.stderr == ""


@pytest.mark.parametrize(("args", "words"), [
    (["--fit", "80XB"], "--fit"),
    (["--amp", "bf16", "--dtype", "float16"], "--amp"),
    (["--optimizer", "lion"], "--optimizer"),
    (["--shard", "0"], "--shard"),
])
def test_cli_mistakes_are_one_line(cli: Cli, args: list[str], words: str) -> None:
    result = cli("memory", "resnet18", "--device", "meta", *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr


def test_cli_table_and_markdown(cli: Cli, tmp_path: Any) -> None:
    result = cli("memory", "resnet18", "-b", "4", "--device", "meta")
    assert result.exit_code == 0
    assert "Training peak (adam)" in result.stdout and "Saved activations" in result.stdout
    out = tmp_path / "memory.md"
    result = cli("memory", "resnet18", "--device", "meta", "-o", str(out))
    assert result.exit_code == 0
    text = out.read_text()
    assert text.startswith("# Memory: resnet18") and "| Training peak (adam) |" in text


def test_llama_70b_is_planned_on_meta() -> None:
    """A 70B model planned without memory: bf16 weights, AdamW, 4,096 tokens. (On this machine
    the command takes 7 s and 0.85 GB resident; with --checkpointing --shard 64 --fit 80GB, 25 s,
    batch 11 per device.)"""
    plan = api.memory("sample_models/llama.py:llama_70b", "int64:4096", device="meta",
                      dtype="bfloat16", optimizer="adamw", shard=64)
    training, sharding = plan.training, plan.sharding
    assert training is not None and sharding is not None
    assert training.parameters_bytes == 68_976_648_192 * 2
    assert training.gradients_bytes == training.parameters_bytes
    assert training.optimizer_bytes == 2 * training.parameters_bytes  # two bf16 moments
    # without checkpointing a 4,096-token sequence keeps 129 GB of activations: no device fits
    assert sharding.training_peak_bytes is not None
    assert sharding.training_peak_bytes > 80 * 10**9 > sharding.inference_peak_bytes


def test_kv_cache_is_the_models_own_cache() -> None:
    """Llama with grouped-query attention: 8 key/value heads of 128 for 32 query heads; the
    cache holds keys and values of every layer for every token, in bf16."""
    plan = api.memory("hf:llama", "int64:16", device="meta", dtype="bfloat16",
                      optimizer="none", kv_cache=4096,
                      kwargs={"num_hidden_layers": 2, "num_key_value_heads": 8})
    kv = plan.kv_cache
    assert kv is not None and kv.tokens == 4096
    assert kv.cache_bytes == 2 * 2 * 8 * 4096 * 128 * 2  # (k, v) x layers x heads x T x dim x 2 B
    weights = plan.inference.weights_bytes
    assert kv.decode_peak_bytes > weights + kv.cache_bytes
    assert kv.prefill_peak_bytes > weights + kv.cache_bytes


def test_kv_cache_on_cpu_equals_meta_and_refuses_models_without_a_cache() -> None:
    options: dict[str, Any] = {"kwargs": {"n_layer": 2}, "optimizer": "none", "kv_cache": 256}
    cpu = api.memory("hf:gpt2@causal-lm", device="cpu", **options).kv_cache
    meta = api.memory("hf:gpt2@causal-lm", device="meta", **options).kv_cache
    assert cpu is not None and meta is not None
    assert cpu.cache_bytes == meta.cache_bytes == 2 * 2 * 256 * 768 * 4
    with pytest.raises(SpecError, match="kv_cache"):
        api.memory("resnet18", device="meta", optimizer="none", kv_cache=16)
