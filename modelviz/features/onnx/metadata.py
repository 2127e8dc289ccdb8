"""What an exported file says about where it was made: only what helps whoever opens it.

torch's exporters write, into every node, the Python stack trace that created it (with the
absolute paths of the author's files: ``/home/ana/project/.venv/.../modeling_gpt2.py``), the FX
node it came from, and doc strings; a file meant to be mailed, uploaded or published must not
carry the author's paths. Kept:

* the producer (``pytorch`` and its version) and ``modelviz_version`` in the model's metadata;
* per node, the module path and class of the module that made it
  (``pkg.torch.onnx.name_scopes``: ``['', 'h.0', 'h.0.attn']``;
  ``pkg.torch.onnx.class_hierarchy``): the structure Netron shows, and what the divergence
  finder (``locate``) uses to pair ONNX values with modules. They name the model's own modules
  and classes, never a file.

Everything else is dropped: stack traces, FX nodes, ``namespace`` (the two kept entries joined),
every doc string, and any remaining entry whose text holds an absolute path.
"""

from __future__ import annotations

import re
from typing import Any

#: Node metadata kept: module paths and classes, no file, no line of code.
KEPT_NODE_KEYS = frozenset({"pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy"})
MODELVIZ_KEY = "modelviz_version"

#: An absolute path: /dir/file, C:\dir, file:// URLs, ~/ home paths.
_PATH = re.compile(r"(?:^|[\s\"'(=:\[,])(?:/[\w.@+-]+/[\w.@+/-]+|[A-Za-z]:[\\/][\w.\\/ -]+|"
                   r"file://\S+|~/[\w./-]+)")


def has_path(text: str) -> bool:
    return bool(_PATH.search(text))


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("torch-modelviz")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _clean_props(props: Any, keep: frozenset[str] | None) -> None:
    """``props``: an onnx_ir metadata dict. ``keep``: the only keys kept (None: any key)."""
    for key in list(props):
        value = str(props[key])
        if (keep is not None and key not in keep) or has_path(value) or has_path(key):
            del props[key]


def scrub_ir(model: Any) -> None:
    """Clean an onnx_ir model in place, before it is saved (the dynamo exporter's)."""
    try:
        import onnx_ir as ir
    except ImportError:  # onnxscript before onnx_ir was split out of it
        from onnxscript import ir  # type: ignore[no-redef]

    model.doc_string = None
    _clean_props(model.metadata_props, None)
    model.metadata_props[MODELVIZ_KEY] = _version()
    graphs = [model.graph, *model.functions.values()]
    for graph in graphs:
        graph.doc_string = None
        _clean_props(graph.metadata_props, None)
        for value in [*graph.inputs, *graph.outputs, *graph.initializers.values()]:
            value.doc_string = None
            _clean_props(value.metadata_props, None)
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        node.doc_string = None
        _clean_props(node.metadata_props, KEPT_NODE_KEYS)
        for value in node.outputs:
            value.doc_string = None
            _clean_props(value.metadata_props, None)
    for function in model.functions.values():
        for node in function:
            node.doc_string = None
            _clean_props(node.metadata_props, KEPT_NODE_KEYS)


def _scrub_graph(graph: Any) -> None:
    import onnx

    graph.doc_string = ""
    _scrub_proto_props(graph.metadata_props, None)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.doc_string = ""
        _scrub_proto_props(value.metadata_props, None)
    for node in graph.node:
        node.doc_string = ""
        _scrub_proto_props(node.metadata_props, KEPT_NODE_KEYS)
        for attr in node.attribute:
            attr.doc_string = ""
            if attr.type == onnx.AttributeProto.GRAPH:
                _scrub_graph(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _scrub_graph(sub)


def _scrub_proto_props(props: Any, keep: frozenset[str] | None) -> None:
    kept = [(p.key, p.value) for p in props
            if (keep is None or p.key in keep) and not has_path(p.value) and not has_path(p.key)]
    del props[:]
    for key, value in kept:
        entry = props.add()
        entry.key, entry.value = key, value


def scrub_proto(model: Any) -> None:
    """Clean an onnx ModelProto in place (the TorchScript exporter's file, read back)."""
    model.doc_string = ""
    _scrub_proto_props(model.metadata_props, None)
    entry = model.metadata_props.add()
    entry.key, entry.value = MODELVIZ_KEY, _version()
    _scrub_graph(model.graph)
    for function in model.functions:
        function.doc_string = ""
        for node in function.node:
            node.doc_string = ""
            _scrub_proto_props(node.metadata_props, KEPT_NODE_KEYS)
