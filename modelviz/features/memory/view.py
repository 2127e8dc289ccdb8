"""``modelviz memory`` rendered: the verdict first, then where the bytes go, layer by layer."""

from __future__ import annotations

import json

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from modelviz.core.formatting import binary_size as size
from modelviz.escape import md_text as markdown_cell
from modelviz.escape import printable
from modelviz.features.memory.plan import MemoryPlan

_KIND_LABELS = {"backward": "backward temporaries", "optimizer": "optimizer state",
                "activations": "activations", "workspace": "kernel workspace"}


def _headline(plan: MemoryPlan) -> list[tuple[str, str]]:
    rows = [("Inference peak (no grad)", size(plan.inference.peak_bytes))]
    if plan.inference.measured_peak_bytes is not None:
        rows.append(("  measured (max_memory_allocated)", size(plan.inference.measured_peak_bytes)))
    training = plan.training
    if training is not None:
        how = [plan.optimizer] + ([f"{plan.amp} autocast"] if plan.amp else []) \
            + (["checkpointed"] if plan.checkpointing else [])
        label = f"Training peak ({', '.join(how)})"
        rows.append((label, f"{size(training.peak_bytes)}, in {training.peak_phase}"))
        if training.measured_peak_bytes is not None:
            rows.append(("  measured (max_memory_allocated)", size(training.measured_peak_bytes)))
        rows += [("  parameters", size(training.parameters_bytes)),
                 ("  gradients", size(training.gradients_bytes)),
                 ("  optimizer state", size(training.optimizer_bytes)),
                 ("  activations saved for backward", size(training.activations_bytes)),
                 ("  at the peak", ", ".join(
                     f"{_KIND_LABELS.get(k, k)} {size(v)}" for k, v in sorted(
                         training.at_peak.items(), key=lambda item: -item[1])
                     if v >= training.peak_bytes / 100))]
    if plan.sharding is not None:
        s = plan.sharding
        rows.append((f"Sharded over {s.devices} (per device)",
                     f"inference {size(s.inference_peak_bytes)}"
                     + (f", training {size(s.training_peak_bytes)}"
                        if s.training_peak_bytes is not None else "")
                     + f"; gathers {printable(s.block)} ({size(s.block_bytes)})"))
    if plan.kv_cache is not None:
        kv = plan.kv_cache
        rows.append((f"Serving {kv.tokens:,} tokens of context",
                     f"KV cache {size(kv.cache_bytes)}; prefill peak "
                     f"{size(kv.prefill_peak_bytes)}, decoding peak {size(kv.decode_peak_bytes)}"))
    if plan.fit is not None:
        f = plan.fit
        verdict = (f"batch {f.max_batch_size:,} ({size(f.peak_bytes)}); "
                   f"batch {f.max_batch_size + 1:,} needs {size(f.next_peak_bytes)}"
                   if f.max_batch_size
                   else f"nothing fits: batch 1 needs {size(f.next_peak_bytes)}")
        rows.append((f"Largest {f.mode} batch in {printable(f.budget)}", verdict))
    return rows


def _layers(plan: MemoryPlan) -> list[list[str]]:
    per = plan.per_module
    out = []
    for name, kind in plan.module_types.items():
        depth = name.count(".") + 1 if name else 0
        shown = printable(name) or printable(plan.model)
        label = ("  " * depth) + shown + f" ({printable(kind)})"
        out.append([label, size(per.parameters.get(name, 0)),
                    size(per.gradients.get(name, 0)) if plan.training else "–",
                    size(per.optimizer.get(name, 0)) if plan.training else "–",
                    size(per.activations.get(name, 0)) if plan.training else "–"])
    return out


_HEADERS = ["Layer (type)", "Parameters", "Gradients", "Optimizer state", "Saved activations"]


def render_table(plan: MemoryPlan) -> RenderableType:
    title = printable(f"{plan.model} · batch {plan.batch_size} · {plan.dtype} · {plan.device}")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for label, value in _headline(plan):
        head.add_row(label, value)
    table = Table(header_style="bold")
    table.add_column(_HEADERS[0], overflow="fold")
    for header in _HEADERS[1:]:
        table.add_column(header, justify="right", no_wrap=True)
    for row in _layers(plan):
        table.add_row(*row)
    parts: list[RenderableType] = [Text(title, style="bold"), head, table]
    parts += [Text(f"note: {printable(n)}", style="dim") for n in plan.notes]
    parts.append(Text(_COUNTED, style="dim"))
    return Group(*parts)


_COUNTED = ("Counted: every tensor the step allocates, as CUDA's caching allocator rounds it. "
            "Not counted: the CUDA context (about 0.5 GiB per process), kernels' workspaces "
            "(cuDNN, cuBLAS), and fragmentation in the allocator's cache.")


def render_text(plan: MemoryPlan) -> str:
    """The table as plain text, as wide as it needs, for a file."""
    import io

    from rich.console import Console

    console = Console(width=10_000, file=io.StringIO(), markup=False, emoji=False)
    width = console.measure(render_table(plan)).maximum
    console = Console(width=max(60, min(width, 200)), file=io.StringIO(), color_system=None,
                      force_terminal=False, markup=False, emoji=False, record=True)
    console.print(render_table(plan), crop=False)
    return console.export_text()


def render_markdown(plan: MemoryPlan) -> str:
    lines = [f"# Memory: {markdown_cell(plan.model)}", "",
             f"batch {plan.batch_size} · {markdown_cell(plan.dtype)} · "
             f"{markdown_cell(plan.device)}", "", "| | |", "| --- | --- |"]
    lines += [f"| {markdown_cell(a.strip())} | {markdown_cell(b)} |" for a, b in _headline(plan)]
    lines += ["", "| " + " | ".join(_HEADERS) + " |", "| --- |" + " ---: |" * 4]
    lines += ["| " + " | ".join(markdown_cell(c.strip()) for c in row) + " |"
              for row in _layers(plan)]
    lines += ["", *(f"- {markdown_cell(n)}" for n in plan.notes), "", _COUNTED, ""]
    return "\n".join(lines)


def render_json(plan: MemoryPlan) -> str:
    return json.dumps(plan.to_dict(), indent=2)
