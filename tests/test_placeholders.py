"""Placeholder weights (core.placeholders): summary, graph, memory and diff build models without
their random init, and must print exactly what the random init gives.

Whether the init ran is read off the random generator: a build that draws nothing leaves it
where it was. Models whose values decide their shapes are in tests/models_for_placeholders.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from modelviz.core import placeholders
from modelviz.core.loading import load_model
from modelviz.core.session import Prepared, prepare, run, shapes_only
from modelviz.features.graph.draw import draw
from modelviz.features.memory.plan import plan
from modelviz.features.summary.data import render_json
from modelviz.features.summary.summary import summarize
from tests import models_for_placeholders as models
from tests.helpers import Cli

M = "tests.models_for_placeholders"
GPT2 = {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 64, "n_positions": 32}


def _summary(prepared: Prepared) -> str:
    return render_json(shapes_only(prepared, lambda p: summarize(p, run(p))))


def _both(spec: str, *sizes: str, **options: Any) -> tuple[Prepared, Prepared]:
    """The model prepared as usual and with placeholders, from the same seed."""
    return (prepare(spec, *sizes, values=True, **options),
            prepare(spec, *sizes, values=False, **options))


def _draws(build: Any) -> bool:
    """Whether ``build()`` drew from the generator while RngProbe made its layers."""
    models.RNG_STATES.clear()
    build()
    before, after = models.RNG_STATES[-1]
    return not torch.equal(before, after)


def test_a_shape_only_build_draws_nothing_and_holds_zeros() -> None:
    assert not _draws(lambda: load_model(f"{M}:RngProbe", init=False))
    assert _draws(lambda: load_model(f"{M}:RngProbe"))
    loaded = load_model(f"{M}:RngProbe", init=False)
    assert loaded.placeholders
    assert all(not p.any() for p in loaded.module.parameters())
    marked = placeholders.found(loaded.module)
    assert marked is not None
    assert marked.names == {"a.weight", "a.bias", "b.weight", "b.bias"}


def test_summary_skips_the_init_and_activations_keep_it(cli: Cli, tmp_path: Path) -> None:
    assert not _draws(lambda: cli("summary", f"{M}:RngProbe", "8", "-f", "json"))
    assert _draws(lambda: cli("activations", f"{M}:RngProbe", "8", "-o",
                              str(tmp_path / "acts")))


CASES = [
    ("resnet18", ("3x64x64",), {}),
    ("hf:gpt2", ("int64:16",), {"kwargs": GPT2}),
    ("timm:vit_tiny_patch16_224", ("3x32x32",), {"kwargs": {"img_size": 32, "depth": 2}}),
    ("sample_models.llama:llama_tiny", ("int64:16",), {}),
]


@pytest.mark.parametrize(("spec", "sizes", "options"), CASES, ids=[c[0] for c in CASES])
def test_summaries_are_identical_with_placeholders(spec: str, sizes: tuple[str, ...],
                                                   options: dict[str, Any]) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("timm")
    usual, fast = _both(spec, *sizes, **options)
    assert fast.placeholders and not usual.placeholders
    assert _summary(fast) == _summary(usual)
    assert fast.placeholders  # transformers reads its masks' values: not the weights'


def test_graphs_and_memory_plans_are_identical_with_placeholders() -> None:
    usual, fast = _both("resnet18", "3x64x64", batch_size=2)  # training: BatchNorm needs 2
    assert fast.placeholders
    assert draw(fast).source == draw(usual).source
    assert plan(fast, optimizer="adam").to_dict() == plan(usual, optimizer="adam").to_dict()


@pytest.mark.parametrize("name", ["Gate", "Tolist", "Masked", "Swallow"])
def test_a_pass_that_reads_weight_values_is_done_again_with_the_init(name: str) -> None:
    usual, fast = _both(f"{M}:{name}", "8")
    assert fast.placeholders
    assert _summary(fast) == _summary(usual)
    assert not fast.placeholders  # rebuilt
    for key, value in usual.model.state_dict().items():
        assert torch.equal(fast.model.state_dict()[key], value), key


def test_reading_the_input_alone_keeps_the_placeholders() -> None:
    usual, fast = _both(f"{M}:InputRead", "8")
    assert _summary(fast) == _summary(usual)
    assert fast.placeholders


def test_a_detector_is_built_with_its_init() -> None:
    prepared = prepare("fasterrcnn_mobilenet_v3_large_320_fpn", "3x64x64", values=False)
    assert not prepared.placeholders


def test_a_constructor_that_reads_a_weight_is_built_with_its_init() -> None:
    torch.manual_seed(3)
    fast = load_model(f"{M}:ReadsWhileBuilding", init=False)
    torch.manual_seed(3)
    usual = load_model(f"{M}:ReadsWhileBuilding")
    assert not fast.placeholders
    assert fast.module.state_dict().keys() == usual.module.state_dict().keys()
    for key, value in usual.module.state_dict().items():
        assert torch.equal(fast.module.state_dict()[key], value), key


def test_trunc_normal_into_a_range_without_zero_gets_a_placeholder_in_range() -> None:
    loaded = load_model(f"{M}:TruncatedAwayFromZero", init=False)
    assert loaded.placeholders
    assert torch.equal(loaded.module.get_parameter("a.weight"), torch.ones(8, 8))


def test_weights_that_replace_every_placeholder_skip_the_init(tmp_path: Path) -> None:
    source = models.RngProbe()
    path = tmp_path / "probe.pt"
    torch.save(source.state_dict(), path)
    assert not _draws(lambda: load_model(f"{M}:RngProbe", weights=path))
    loaded = load_model(f"{M}:RngProbe", weights=path)
    assert not loaded.placeholders
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value), key


@pytest.mark.parametrize(("name", "drop"), [("RandomBuffer", None), ("Gate", "c.bias"),
                                            ("HiddenDraw", None)])
def test_weights_that_leave_placeholders_build_with_the_init(name: str, drop: str | None,
                                                             tmp_path: Path) -> None:
    """A buffer drawn after the skipped inits, a key missing from the file (--no-strict), a
    tensor drawn into a list: the ordinary build's values, with the file's."""
    state = getattr(models, name)().state_dict()
    if drop is not None:
        del state[drop]
    path = tmp_path / "w.pt"
    torch.save(state, path)
    torch.manual_seed(5)
    loaded = load_model(f"{M}:{name}", weights=path, strict=drop is None)
    torch.manual_seed(5)
    usual = load_model(f"{M}:{name}")
    usual.module.load_state_dict(state, strict=drop is None)
    assert not loaded.placeholders

    def tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return dict(model.named_buffers()) | dict(model.named_parameters())

    got = tensors(loaded.module)
    for key, value in tensors(usual.module).items():
        assert torch.equal(got[key], value), key
    if name == "HiddenDraw":
        assert torch.equal(vars(loaded.module)["kept"][0], vars(usual.module)["kept"][0])


def test_diff_of_two_specs_gives_the_random_inits_figures(cli: Cli) -> None:
    """Gate's FLOPs depend on which head its random weights pick; placeholders (zeros) would
    pick the other one, so the figure tells whether the pass was done again with the init."""
    result = cli("diff", f"{M}:Gate", f"{M}:InputRead", "8", "-f", "json")
    assert result.exit_code == 0, result.stderr
    flops = json.loads(result.stdout)["totals"]["flops"]
    expected = [summarize(p, run(p)).totals.flops
                for p in (prepare(f"{M}:Gate", "8"), prepare(f"{M}:InputRead", "8"))]
    assert [flops["a"], flops["b"]] == expected
