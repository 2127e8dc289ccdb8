"""Names from the user's model reach spreadsheets, Markdown, terminals and Graphviz as text.

A real model whose module names and class names are hostile (formulas, HTML, newlines, backticks,
pipes, terminal escapes, bidi overrides, Rich markup, DOT quoting) goes through the real API and
renderers, and each output is read back by the program it is for: ``csv``, a CommonMark + GFM
table parser, Rich, and Graphviz's ``dot``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from markdown_it import MarkdownIt
from markdown_it.token import Token
from torch import nn

from modelviz import api
from modelviz.errors import SpecError
from modelviz.escape import md_code, md_text, printable
from modelviz.features.activations.select import select_modules
from modelviz.features.diff.compare import compare
from modelviz.features.diff.view import render_diff_markdown, render_diff_table
from modelviz.features.summary.classic import render_classic
from modelviz.features.summary.data import render_csv, render_json
from modelviz.features.summary.markdown import render_markdown
from modelviz.features.summary.options import ALL_COLUMNS, TableOptions
from modelviz.features.summary.summary import Summary
from modelviz.features.summary.table import plain_text, render_table
from tests.helpers import Cli

SVG = "{http://www.w3.org/2000/svg}"

#: ModuleDict keys, one per way a name can break an output.
HOSTILE = {
    "formula": "=cmd|' /C calc'!A0",
    "html": "<img src=x onerror=alert(1)>",
    "newline": "a\nb",
    "backticks": "tick`s``",
    "pipe": "pi|pe",
    "ansi": "\x1b[31mred",
    "bidi": "\u202eevil",
    "rich": "[/]",
    "dot": '"q\\<&>{}|',
    "link": "[click](https://evil/x)",
}
ROOT_TYPE = "Model<script>\x1b[1m"
GROUP = "@grp\x1b[0m"  # a container: its name is a parent cell and a Graphviz frame's label

Evil = type("Evil<b>", (nn.Linear,), {})
Plus = type("+Plus", (nn.ReLU,), {})  # a type that a spreadsheet would read as a formula
Clear = type("Clear\x1b[2J", (nn.Identity,), {})  # a type that would clear the terminal


class _Base(nn.Module):
    """Every hostile name in one chain of 4 -> 4 layers."""

    def __init__(self, keys: tuple[str, ...] = tuple(HOSTILE.values()),
                 evil: type[nn.Linear] = Evil) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict({key: nn.Linear(4, 4) for key in keys})
        self.add_module("=sum", nn.Linear(4, 4))
        self.add_module(GROUP, nn.Sequential(nn.Linear(4, 4), Plus()))
        self.evil = evil(4, 4)
        self.clear = Clear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        x = getattr(self, "=sum")(x)
        x = getattr(self, GROUP)(x)
        out: torch.Tensor = self.clear(self.evil(x))
        return out


#: The model's own class name is hostile too: it titles the tables and the graph.
Hostile = type(ROOT_TYPE, (_Base,), {})


def _hostile_module() -> nn.Module:
    torch.manual_seed(0)
    model: nn.Module = Hostile()
    return model


@pytest.fixture(scope="module")
def summary() -> Summary:
    return api.summary(_hostile_module(), "4")


def _shown(key: str) -> str:
    """How the module ``blocks.<key>`` is shown wherever control characters cannot go."""
    return "blocks." + printable(HOSTILE[key])


# --- the helpers, on their own ------------------------------------------------------------------


def test_md_code_fences_and_pads() -> None:
    assert md_code("layer1.0") == "`layer1.0`"
    assert md_code("tick`s``") == "``` tick`s`` ```"
    assert md_code("`x") == "`` `x ``"
    assert md_code("a|b") == "`a\\|b`" and md_code("a|b", table=False) == "`a|b`"
    assert md_code("a\nb") == "`a\\nb`"


def test_md_text_keeps_ordinary_text() -> None:
    for ordinary in ("sample_models.seeds:Net", "Conv2d", "MaxPool2d · 2 calls", "[1, 4]",
                     "output [1, 6, 24, 24] → [1, 10, 24, 24]", "{a: [1, 4]}", "65,000"):
        assert md_text(ordinary) == ordinary
    assert md_text("<b>&amp;") == "&lt;b&gt;&amp;amp;"
    assert md_text("_x_ *y* `z` ~w~ a|b \\") == "\\_x\\_ \\*y\\* \\`z\\` \\~w\\~ a\\|b \\\\"
    assert md_text("[x](y) ![i][r]") == "[x\\](y) ![i\\][r]"


# --- CSV: read back with csv, formulas neutralised, one row per module ---------------------------


def test_csv_cells_are_text_for_spreadsheets(summary: Summary) -> None:
    text = render_csv(summary)
    rows = list(csv.DictReader(io.StringIO(text)))
    layers = summary.to_dict()["layers"]
    assert len(rows) == len(layers) == len(HOSTILE) + 7
    assert text.count("\n") == len(rows) + 1  # no record spans lines
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", text)
    by_name = {row["name"]: row for row in rows}
    assert by_name["'=sum"]["type"] == "Linear"
    group = "'" + printable(GROUP)
    assert by_name[group]["type"] == "Sequential"
    assert by_name[group + ".1"]["type"] == "'+Plus" and by_name[group + ".1"]["parent"] == group
    assert by_name["clear"]["type"] == "Clear\\x1b[2J"
    assert by_name["evil"]["type"] == "Evil<b>"
    for key in HOSTILE:
        row = by_name[_shown(key)]  # "blocks." first: nothing to neutralise, only escapes
        assert row["parent"] == "blocks" and row["params"] == "20"
        assert json.loads(row["output_shapes"]) == [1, 4]
    for row in rows:
        for field in ("name", "type", "parent"):
            assert not row[field].startswith(("=", "+", "-", "@", "\t", "\r")), row
        assert all(re.fullmatch(r"-?\d+", row[f]) for f in ("depth", "calls", "params", "flops"))


def test_json_keeps_the_real_names(summary: Summary) -> None:
    text = render_json(summary)
    assert "\x1b" not in text and "\u202e" not in text and "\n\"" not in text
    names = {layer["name"] for layer in json.loads(text)["layers"]}
    assert {"blocks." + key for key in HOSTILE.values()} <= names
    assert json.loads(text)["model_type"] == ROOT_TYPE


# --- Markdown: every row one line, parsed back as a table with the names in code spans ----------


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


#: CommonMark with GFM tables (markdown-it-py comes with Rich).
MARKDOWN = MarkdownIt("commonmark").enable("table")


def _table_rows(text: str) -> list[list[Token]]:
    """The body rows of every table, each a list of its cells' inline tokens."""
    rows: list[list[Token]] = []
    inside = False
    for token in MARKDOWN.parse(text):
        if token.type in ("tbody_open", "tbody_close"):
            inside = token.type == "tbody_open"
        elif inside and token.type == "tr_open":
            rows.append([])
        elif inside and token.type == "inline":
            rows[-1].append(token)
    return rows


def _code_spans(inline: Token) -> list[str]:
    return [child.content for child in inline.children or [] if child.type == "code_inline"]


def _html(text: str) -> str:
    html: str = MARKDOWN.render(text)  # markdown-it-py annotates render() as returning Any
    return html


def test_markdown_summary_is_one_table_of_code_spans(summary: Summary) -> None:
    options = TableOptions(columns=ALL_COLUMNS)
    text = render_markdown(summary, options)
    lines = text.splitlines()
    header = lines[2]
    columns = _unescaped_pipes(header)
    table = lines[4:lines.index("", 4)]
    assert len(table) == len(summary.rows(depth=options.depth, fold=options.fold))
    assert all(_unescaped_pipes(line) == columns for line in table), table
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", text)

    rows = _table_rows(text)
    layer_rows = [r for r in rows if len(r) == columns - 1]
    assert len(layer_rows) == len(table)
    spans = [span for row in layer_rows for span in _code_spans(row[0])]
    for key, name in HOSTILE.items():
        expected = _shown(key)
        assert expected in spans, (key, spans)
        if name == printable(name):
            assert "blocks." + name in spans  # exactly the name, HTML and backticks included

    html = _html(text)
    assert "<img" not in html and "<b>" not in html and "<script" not in html
    assert "<a " not in html  # the [click](...) name is no link
    assert "(Evil&lt;b&gt;)" in html
    heading = html.splitlines()[0]
    assert heading == (f"<h3>{_escaped_html(printable(ROOT_TYPE))} "
                       f"({_escaped_html(printable(ROOT_TYPE))})</h3>")


def _escaped_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _diff_models() -> tuple[Summary, Summary]:
    a = api.summary(_hostile_module(), "4")
    keys = tuple(v for k, v in HOSTILE.items() if k != "html")
    b = api.summary(type(ROOT_TYPE, (_Base,), {})(keys, nn.Linear), "4")
    return a, b


def test_diff_markdown_for_pull_requests() -> None:
    a, b = _diff_models()
    diff = compare(a.to_dict(), b.to_dict(), a_label="<img src=x>", b_label="x`y|z")
    text = render_diff_markdown(diff)
    lines = text.splitlines()
    assert lines[0] == "### `<img src=x>` → ``x`y|z``"
    layer_lines = [line for line in lines if line.startswith("| `")]
    assert len(layer_lines) == len(diff.layers) == 3  # blocks, evil changed; html removed
    assert all(_unescaped_pipes(line) == 4 for line in layer_lines)

    html = _html(text)
    assert "<img" not in html and "<b>" not in html
    assert "<code>&lt;img src=x&gt;</code>" in html and "<code>x`y|z</code>" in html
    rows = [r for r in _table_rows(text) if _code_spans(r[0])]
    assert sorted(span for r in rows for span in _code_spans(r[0])) == sorted(
        ["blocks", "evil", "blocks." + HOSTILE["html"]])
    assert '<td style="text-align:left">type Evil&lt;b&gt; → Linear</td>' in html


def test_diff_table_on_a_terminal() -> None:
    a, b = _diff_models()
    diff = compare(a.to_dict(), b.to_dict(), a_label="[/]\x1b[31m", b_label="[bold]b")
    text = plain_text(render_diff_table(diff))
    assert "\x1b" not in text
    assert "[/]\\x1b[31m → [bold]b" in text
    assert "type Evil<b> → Linear" in text


# --- the terminal: escapes written out, never sent ----------------------------------------------


def test_terminal_table_shows_escapes(summary: Summary) -> None:
    text = plain_text(render_table(summary, TableOptions()))
    assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b[31mred" in text and "\\u202eevil" in text
    assert f"{printable(ROOT_TYPE)} ({printable(ROOT_TYPE)})" in text
    body = [line for line in text.splitlines() if line.startswith("│")]
    assert len(body) == len(summary.rows())  # "a\nb" did not split a row
    assert any("blocks.a\\nb (Linear)" in line for line in body)
    assert any("[/] (Linear)" in line for line in body)
    assert any("(Clear\\x1b[2J)" in line for line in body)
    assert str(summary) == text


def test_classic_shows_escapes(summary: Summary) -> None:
    text = render_classic(summary)
    assert "\x1b" not in text
    assert "Clear\\x1b[2J-" in text and "Evil<b>-" in text


def test_cli_summary_and_files(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path
    spec = "tests.test_escaping:Hostile"
    result = cli("summary", spec, "4")
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "\\x1b[31mred" in result.stdout
    for name in ("s.csv", "s.md"):
        assert cli("summary", spec, "4", "-o", str(folder / name)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO((folder / "s.csv").read_text(encoding="utf-8"))))
    assert "'=sum" in {row["name"] for row in rows}
    assert "<img" not in _html((folder / "s.md").read_text(encoding="utf-8"))


# --- Graphviz: real dot lays out the DOT; the SVG holds the escaped names ------------------------


def test_graph_with_hostile_names_renders_in_graphviz() -> None:
    drawing = api.graph(_hostile_module(), "4")
    svg = drawing.render("svg").data.decode("utf-8")
    assert "\x1b" not in svg and "\u202e" not in svg
    root = ET.fromstring(svg)  # well-formed XML: no raw control character in it
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    titles = {g.findtext(f"{SVG}title"): g.get("class") for g in root.iter(f"{SVG}g")}
    for key, name in HOSTILE.items():
        assert _shown(key) in texts, (key, texts)
        assert titles.get(dot_title("blocks." + name)) == "node", key
    assert "Evil<b> · 20 params" in texts
    assert "Clear\\x1b[2J" in texts
    frame = f"{printable(GROUP)} · Sequential"
    assert frame in texts and titles.get("cluster_" + dot_title(GROUP)) == "cluster"
    assert any(t.startswith(f"{printable(ROOT_TYPE)} · ") for t in texts)  # the caption


def dot_title(name: str) -> str:
    """A node's id as Graphviz writes it back in the SVG: ``\\"`` read as ``"``, other
    backslashes kept."""
    return printable(name.replace("\\", "\\\\"))


# --- --layer: an exact name before any glob ------------------------------------------------------


class _Staged(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        odd = type("Odd[1]", (nn.Identity,), {})
        self.blocks = nn.ModuleDict({"stage[1]": nn.Linear(4, 4), "stage1": nn.Linear(4, 4),
                                     "stage[2]": odd()})
        self.add_module("\x1b[2Jtop", nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return x


def test_exact_layer_name_before_glob() -> None:
    model = _Staged()
    assert select_modules(model, ["blocks.stage[1]"]) == ["blocks.stage[1]"]
    assert select_modules(model, [" blocks.stage[2] "]) == ["blocks.stage[2]"]
    assert select_modules(model, ["blocks.stage[12]"]) == ["blocks.stage1"]  # still a glob
    assert select_modules(model, ["blocks.*"]) == [
        "blocks.stage[1]", "blocks.stage1", "blocks.stage[2]"]
    assert select_modules(model, types=["Odd[1]"]) == ["blocks.stage[2]"]
    report = api.activations(model, "4", layers="blocks.stage[1]")
    assert [layer.module for layer in report.layers] == ["blocks.stage[1]"]


def test_layer_not_found_still_helps() -> None:
    model = _Staged()
    with pytest.raises(SpecError) as error:
        select_modules(model, ["blocks.stage[9]"])
    assert error.value.problem == "`layers='blocks.stage[9]'` matches no module of the model."
    assert str(error.value.fix).startswith("Did you mean ")
    assert "blocks.stage[1]" in str(error.value.fix)
    with pytest.raises(SpecError) as error:
        select_modules(model, ["nothing.like.it"])
    assert "\x1b" not in str(error.value) and "\\x1b[2Jtop" in str(error.value.fix)


def test_graphviz_escapes_in_module_names_show_as_written() -> None:
    """Graphviz expands ``\\N`` (the node's id) and ``\\G`` even inside HTML-like labels; a
    module called ``a\\Nb`` must be drawn as ``a\\Nb``, not as the node id."""
    model = nn.Sequential()
    model.add_module("a\\Nb", nn.Linear(4, 4))
    model.add_module("c\\Gd", nn.ReLU())
    svg = api.graph(model, "4").render("svg").data.decode()
    texts = "".join(t.text or "" for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text"))
    assert "a\\Nb" in texts and "c\\Gd" in texts
