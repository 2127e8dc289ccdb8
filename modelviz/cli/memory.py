"""``modelviz memory``: will it train, or serve, at this batch size, on this card?"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from modelviz.cli._console import emit, flags, print_out, spinner
from modelviz.cli._options import (
    BatchOpt,
    DeviceOpt,
    DtypeOpt,
    ForwardArgOpt,
    InputFileOpt,
    KwargOpt,
    ModelArg,
    ModelOptions,
    SeedOpt,
    SizesArg,
    StrictOpt,
    TrustPickleOpt,
    WeightsOpt,
)


class Optimizer(str, Enum):
    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"
    adamw = "adamw"
    adafactor = "adafactor"
    none = "none"


class Amp(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"


class MemoryFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


EXTENSIONS = {".txt": MemoryFormat.table, ".md": MemoryFormat.markdown,
              ".json": MemoryFormat.json}


def memory(
    model: ModelArg,
    sizes: SizesArg = None,
    optimizer: Annotated[Optimizer, typer.Option(
        "--optimizer", help="The optimizer whose state the step keeps; none: inference only.")
    ] = Optimizer.adam,
    amp: Annotated[Amp | None, typer.Option(
        "--amp", help="Autocast to bf16 or fp16 over float32 master weights.",
        show_default=False)] = None,
    checkpointing: Annotated[bool, typer.Option(
        "--checkpointing", help="Activation checkpointing of the repeated blocks.")] = False,
    shard: Annotated[int, typer.Option(
        "--shard", min=1, metavar="N",
        help="FSDP / ZeRO-3 over N devices: the peak per device.")] = 1,
    fit: Annotated[str | None, typer.Option(
        "--fit", metavar="BUDGET",
        help="The largest batch whose peak fits: 80GB (1e9 bytes), 24GiB (2**30), or a card: "
             "h100, a100-40gb, rtx4090...", show_default=False)] = None,
    kv_cache: Annotated[int | None, typer.Option(
        "--kv-cache", min=1, metavar="TOKENS",
        help="For a decoder: serving with a KV cache of TOKENS tokens (prefill, then one "
             "decoded token).", show_default=False)] = None,
    depth: Annotated[int, typer.Option(
        "--depth", "-d", min=0, help="Layers shown down to this depth.")] = 1,
    fmt: Annotated[MemoryFormat | None, typer.Option(
        "--format", "-f", help="Output format; default: from -o's extension, else table.",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to FILE (.txt, .md, .json) instead of stdout.")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
    batch_size: BatchOpt = 1,
    kwarg: KwargOpt = None,
    forward_arg: ForwardArgOpt = None,
    weights: WeightsOpt = None,
    strict: StrictOpt = True,
    trust_pickle: TrustPickleOpt = False,
    input_file: InputFileOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Peak memory of inference and of a training step, simulated allocation by allocation.

    Example: modelviz memory resnet50 3x224x224 -b 32 --optimizer adamw --fit h100
    """
    opts = ModelOptions.from_locals(locals())
    from modelviz.features.memory.budget import parse_budget
    from modelviz.output import format_from_suffix

    chosen = fmt or format_from_suffix(output, EXTENSIONS, MemoryFormat.table,
                                       listed=".txt, .md or .json")
    budget = parse_budget(fit) if fit is not None else None
    quiet = chosen is MemoryFormat.json and output is None

    from modelviz.core.session import shapes_only
    from modelviz.features.memory import view
    from modelviz.features.memory.plan import plan

    # Shapes decide every figure, so the weights may be placeholders; not with --kv-cache,
    # whose decoding steps run outside the engine's pass, which watches what is read.
    prepared = opts.load(quiet=quiet, values=kv_cache is not None)
    with spinner("Simulating inference and a training step", quiet=quiet):
        result = shapes_only(prepared, lambda p: plan(
            p, optimizer=optimizer.value, amp=amp.value if amp else None,
            checkpointing=checkpointing, shard_over=shard, budget=budget, depth=depth,
            kv_cache=kv_cache))
    result.notes[:] = [flags(n) for n in result.notes]  # in every format, in the CLI's words
    if chosen is MemoryFormat.table and output is None:
        print_out(view.render_table(result))
        return
    if chosen is MemoryFormat.json:
        text = view.render_json(result) + "\n"
    elif chosen is MemoryFormat.markdown:
        text = view.render_markdown(result)
    else:
        text = view.render_text(result)
    emit(text, output)
