"""Named SIZES (keyword inputs of ``forward``), --forward-arg, and realistic token ids.

A second positional size once bound silently to ``past_key_values`` and ended in a cryptic torch
error; token ids were drawn below the smallest embedding table ({0, 1} for BERT). Real models
throughout: the checks read ``forward``'s own signature.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import modelviz
from modelviz.core.session import prepare
from modelviz.core.specs import InputSpec, parse_size, parse_sizes
from modelviz.errors import SpecError
from tests.helpers import Cli, Result

MODELS = """
    import torch
    from torch import nn


    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x, mask=None, flatten: bool = False):
            y = self.fc(x)
            if mask is not None:
                y = y * mask
            return y.flatten() if flatten else y


    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.words = nn.Embedding(30000, 16)
            self.positions = nn.Embedding(512, 16)

        def forward(self, input_ids, past_key_values=None, attention_mask=None, use_cache=True):
            pos = torch.arange(input_ids.shape[-1])
            out = self.words(input_ids) + self.positions(pos)
            if attention_mask is not None:
                out = out * attention_mask.unsqueeze(-1)
            return out
"""


class Words(nn.Module):
    """A word table far larger than the position table, as in BERT or GPT-2."""

    def __init__(self) -> None:
        super().__init__()
        self.words = nn.Embedding(30000, 16)
        self.positions = nn.Embedding(512, 16)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.words(input_ids) + self.positions(
            torch.arange(input_ids.shape[-1]))
        return out


@pytest.fixture
def models(tmp_path: Path) -> str:
    path = tmp_path / "named_models.py"
    path.write_text(textwrap.dedent(MODELS))
    return str(path)


def _one_line(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


# Parsing: torch-free, at the edge.


def test_named_size_parses_and_round_trips() -> None:
    spec = parse_size(" attention_mask = int64:128 ")
    assert spec == InputSpec((128,), "int64", name="attention_mask")
    assert parse_size(str(spec)) == spec
    assert parse_size("3x8").name is None


@pytest.mark.parametrize(("texts", "message"), [
    (["mask=4", "8"], "positional size '8' comes after named size 'mask=4' in `sizes`. Put "
     "positional sizes first, or name this one too (NAME=8)."),
    (["8", "mask=4", "mask=int64:4"], "`sizes` names 'mask' twice."),
])
def test_order_and_duplicates(texts: list[str], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_sizes(texts)
    assert str(info.value).startswith(message)


def test_bad_name_is_quoted() -> None:
    with pytest.raises(SpecError, match=r"bad size '2x=3': '2x' is not a parameter name"):
        parse_size("2x=3")


# Named sizes become keyword inputs, checked against forward's signature.


def test_named_sizes_are_keyword_inputs(cli: Cli, models: str) -> None:
    result = cli("summary", f"{models}:Masked", "8", "mask=4", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["inputs"] == [
        {"name": "x", "shape": [1, 8], "dtype": "float32"},
        {"name": "mask", "shape": [1, 4], "dtype": "float32"}]
    prepared = prepare(f"{models}:Masked", "8", "mask=4")
    assert len(prepared.inputs.args) == 1 and list(prepared.inputs.kwargs) == ["mask"]


def test_unknown_name_gets_a_suggestion(cli: Cli, models: str) -> None:
    line = _one_line(cli("summary", f"{models}:Masked", "8", "msk=4"))
    assert line == ("error: SIZES names 'msk', which Masked.forward does not take. Did you mean "
                    "'mask'? Use one of its parameters: x, mask, flatten.")


def test_positional_then_named_order(cli: Cli, models: str) -> None:
    line = _one_line(cli("summary", f"{models}:Masked", "mask=4", "8"))
    assert line.startswith("error: positional size '8' comes after named size 'mask=4' in SIZES.")


def test_size_bound_to_a_cache_is_refused_in_words(cli: Cli, models: str) -> None:
    """Before: the second size went to past_key_values and torch failed deep in the model."""
    line = _one_line(cli("summary", f"{models}:Decoder", "int64:16", "int64:16"))
    assert line == ("error: size 'int64:16' would be passed as 'past_key_values' of "
                    "Decoder.forward, which is not an input tensor. Name it instead, e.g. "
                    "attention_mask=int64:16; give past_key_values with --forward-arg if at all.")
    result = cli("summary", f"{models}:Decoder", "int64:16", "attention_mask=int64:16")
    assert result.exit_code == 0, result.stderr


def test_too_many_positional_sizes(models: str) -> None:
    with pytest.raises(SpecError) as info:
        prepare(Words(), "int64:4", "int64:4", "int64:4", "int64:4")
    assert str(info.value) == ("4 positional sizes given, but Words.forward takes 3 positional "
                               "inputs (input_ids, attention_mask, decoder_attention_mask). "
                               "Drop the extra sizes.")
    with pytest.raises(SpecError, match=r"would be passed as 'flatten' of Masked.forward, which "
                                        r"is not an input tensor. Drop it: Masked.forward takes "
                                        r"no other input tensor"):
        prepare(f"{models}:Masked", "8", "4", "4")


def test_a_size_both_by_position_and_by_name(models: str) -> None:
    with pytest.raises(SpecError, match="`sizes` gives 'x' twice: by position"):
        prepare(f"{models}:Masked", "8", "x=8")


# --forward-arg: non-tensor keyword arguments.


def test_forward_arg_reaches_forward(cli: Cli, models: str) -> None:
    """``flatten=True`` changes what forward returns: the flag got there, as a Python bool."""
    result = cli("summary", f"{models}:Masked", "8", "--forward-arg", "flatten=True", "-b", "2",
                 "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outputs"] == [8]
    flat = modelviz.summary(f"{models}:Masked", "8", batch_size=2,
                            forward_args={"flatten": True})
    shaped = modelviz.summary(f"{models}:Masked", "8", batch_size=2)
    assert flat.to_dict()["outputs"] == [8]
    assert shaped.to_dict()["outputs"] == [2, 4]
    assert flat.to_dict()["inputs"] == shaped.to_dict()["inputs"]  # a flag is not an input


def test_forward_arg_names_are_checked(cli: Cli, models: str) -> None:
    line = _one_line(cli("summary", f"{models}:Masked", "8", "--forward-arg", "flaten=True"))
    assert line.startswith("error: --forward-arg names 'flaten', which Masked.forward does not "
                           "take. Did you mean 'flatten'?")
    line = _one_line(cli("summary", f"{models}:Masked", "8", "--forward-arg", "flatten"))
    assert line == "error: bad --forward-arg 'flatten'. Write key=value, e.g. --forward-arg " \
                   "use_cache=False."


@pytest.mark.parametrize("command", ["summary", "graph", "activations", "export-onnx", "report",
                                     "tensorboard", "diff"])
def test_every_model_command_takes_forward_arg(cli: Cli, command: str) -> None:
    args = ["resnet18", "resnet18"] if command == "diff" else ["resnet18"]
    extra = ["--logdir", "runs"] if command == "tensorboard" else []
    line = _one_line(cli(command, *args, "3x32x32", *extra, "--forward-arg", "no value"))
    assert line.startswith("error: bad --forward-arg 'no value'.")


# Realistic token ids and masks.


def test_token_ids_span_the_vocabulary_and_masks_are_ones() -> None:
    prepared = prepare(Words(), "int64:2000", "attention_mask=int64:2000",
                       "decoder_attention_mask=bool:7", seed=3)
    ids = prepared.inputs.args[0]
    assert int(ids.max()) > 512 and int(ids.max()) < 30000 and int(ids.min()) >= 0
    assert bool((prepared.inputs.kwargs["attention_mask"] == 1).all())
    assert bool(prepared.inputs.kwargs["decoder_attention_mask"].all())
    again = prepare(Words(), "int64:2000", "attention_mask=int64:2000", seed=3)
    assert torch.equal(again.inputs.args[0], ids)
    other = prepare(Words(), "int64:2000", seed=4)
    assert not torch.equal(other.inputs.args[0], ids)


def test_a_positional_mask_is_ones_too() -> None:
    prepared = prepare(Words(), "int64:64", "int64:64")
    assert bool((prepared.inputs.args[1] == 1).all())
