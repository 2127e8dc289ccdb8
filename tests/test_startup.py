"""A mistake in a string on the command line is found before torch is imported.

Importing torch takes seconds; `modelviz summary resnet18 3xx224` must say the size is bad at
once. Each case runs the real CLI in a fresh interpreter and checks what it had imported by then.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

PROBE = """
import sys
from modelviz.cli import main
sys.argv = ["modelviz", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    heavy = sorted(m for m in ("torch", "torchvision", "onnx", "matplotlib", "wandb", "visdom")
                   if m in sys.modules)
    print("EXIT", exc.code, "HEAVY", ",".join(heavy) or "-", file=sys.stderr)
"""

CASES = [
    (["summary", "resnet18", "3xx224"], "bad size"),
    (["graph", "resnet18", "3x0x224", "-o", "g.svg"], "size"),
    (["activations", "resnet18", "3x224x224", "--mean", "a,b"], "--mean"),
    (["export-onnx", "resnet18", "int65:3"], "dtype"),
    (["report", "resnet18", "3x224x224", "--atol", "-1", "-o", "r"], "--atol"),
    (["tensorboard", "resnet18", "3x224", "--logdir", "runs/x", "--kwarg", "x"], "--kwarg"),
    (["diff", "resnet18", "resnet34", "3x224x224", "--device", "gpu"], "unknown device"),
    (["wandb", "resnet18", "3x22x", "--project", "p", "--offline"], "bad size"),
    (["visdom", "resnet18", "--port", "8097", "--kwarg", "x"], "--kwarg"),
    (["summary", "resnet18", "--dtype", "float8"], "unknown dtype"),
    (["summary", "resnet18", "--seed", "-1"], "--seed"),
    (["summary", "resnet18", "--max-params", "lots"], "--max-params"),
    (["summary", "resnet18", "3x2-2=4"], "not a parameter name"),
    (["summary", "resnet18", "mask=4", "3x4x4"], "comes after named size"),
    (["graph", "resnet18", "x=3x4x4", "x=3x4x4"], "names 'x' twice"),
    (["summary", "resnet18", "--forward-arg", "use_cache"], "--forward-arg"),
]


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_strings_fail_before_torch_is_imported(argv: list[str], expected: str,
                                                   tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], check=False, capture_output=True,
                          text=True,
                          cwd=tmp_path, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "",
                                                         "COLUMNS": "200"})
    lines = done.stderr.splitlines()
    assert lines[-1] == "EXIT 2 HEAVY -", done.stderr
    assert lines[0].startswith("error:") and expected in lines[0], done.stderr


def _message_strings(source: str) -> list[str]:
    """The string literals of a module that are not docstrings (f-strings' literal parts too)."""
    import ast

    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_every_parameter_a_message_names_has_a_flag() -> None:
    """Library messages name parameters (`input_file`, `device=cpu`); the CLI must know the flag
    of each, or a user of the command line would read a Python name."""
    import re

    from modelviz.cli._console import FLAGS

    token = re.compile(r"(?<!`)`([a-z][a-z_]*)(?:=([^`]*))?`(?!`)")
    seen, unknown = set(), set()
    for path in (ROOT / "modelviz").rglob("*.py"):
        if "cli" in path.parts:
            continue
        for text in _message_strings(path.read_text()):
            for name, value in token.findall(text):
                seen.add(name)
                if name not in FLAGS and f"{name}={value}" not in FLAGS:
                    unknown.add(f"{path.name}: `{name}`")
    assert not unknown
    assert {"sizes", "input_file", "weights", "device", "layers", "atol"} <= seen


def test_messages_read_as_flags_on_the_command_line(tmp_path: Path) -> None:
    """The same message, raised in Python terms, reads as flags from the CLI."""
    done = subprocess.run([sys.executable, "-m", "modelviz", "summary", "resnet18",
                           "--weights", str(tmp_path / "none.pt")], check=False,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: --weights {tmp_path / 'none.pt'}: no such file"), \
        done.stderr
