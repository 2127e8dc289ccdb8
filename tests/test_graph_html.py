"""``modelviz graph MODEL -o model.html``: the offline viewer, in a real headless Chromium.

Chromium runs with every host name unresolvable, and the page's own Content-Security-Policy
allows no fetches but ``data:``; the tests drive the page through its URL fragment (deep links),
which is what a click leaves there too.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import torch
from torch import nn

from modelviz import api
from modelviz.features.graph.interactive import interactive_html, script_json
from tests.browser import FLAGS, chromium
from tests.helpers import Cli, run_cli

OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking")


def dom(page: Path, fragment: str = "", *, budget_ms: int = 10_000) -> str:
    """The DOM after the page laid its graph out, from ``file://`` with no network.

    WebAssembly compiles in real time, which virtual time does not wait for: on a busy machine
    the DOM can be dumped before Graphviz is ready, so a dump without a drawing is retried.
    """
    text = ""
    for attempt in range(3):
        with tempfile.TemporaryDirectory() as profile:
            proc = subprocess.run(
                [chromium(), *FLAGS, *OFFLINE, f"--user-data-dir={profile}",
                 f"--virtual-time-budget={budget_ms}", f"--timeout={4_000 * (attempt + 1)}",
                 "--dump-dom", page.resolve().as_uri() + fragment],
                capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        text = proc.stdout
        if 'data-rendered="' in text:
            return text
    status = re.search(r'id="status">([^<]*)', text)
    raise AssertionError(f"the page drew nothing: {status.group(1) if status else text[-2000:]}")


def svg_texts(text: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", text)


def details(text: str) -> dict[str, str]:
    panel = re.search(r'<dl id="details">(.*?)</dl>', text, re.S)
    assert panel is not None, text[-3000:]
    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", panel.group(1)))


def embedded(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="modelviz-data">(.*?)</script>',
                      html, re.S)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


@pytest.fixture(scope="module")
def resnet_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "resnet18.html"
    result = run_cli("graph", "resnet18", "-o", str(path))
    assert result.exit_code == 0, result.stderr
    assert "wrote" in result.stderr
    return path


def test_page_is_self_contained(resnet_page: Path) -> None:
    html = resnet_page.read_text(encoding="utf-8")
    assert not re.search(r"""\b(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "<link" not in html and not re.search(r"<script[^>]*\bsrc\s*=", html)
    assert "default-src 'none'" in html  # the page itself refuses any fetch
    assert "Viz.js 3.31.0" in html  # Graphviz in WebAssembly, inlined
    size = resnet_page.stat().st_size
    assert 1_000_000 < size < 3_000_000


def test_embedded_numbers_are_the_summarys(resnet_page: Path) -> None:
    data = embedded(resnet_page.read_text(encoding="utf-8"))
    summary = api.summary("resnet18")
    assert data["params"] == summary.totals.params == 11_689_512
    assert data["flops"] == summary.totals.flops
    for name, record in summary.trace.modules.items():
        module = data["modules"][name]
        assert (module["type"], module["params"], module["flops"]) == (
            record.type, record.params_total, record.flops), name
        assert module["output_bytes"] == record.output_bytes
    conv1 = data["modules"]["conv1"]
    assert conv1["geometry"] == {"kernel_size": [7, 7], "stride": [2, 2], "padding": [3, 3],
                                 "dilation": [1, 1], "groups": 1}
    assert conv1["inputs"] == ["[1, 3, 224, 224]"] and conv1["output"] == "[1, 64, 112, 112]"


def test_initial_view_shows_the_top_level_modules(resnet_page: Path) -> None:
    text = dom(resnet_page)
    assert 'data-rendered="' in text, text[-2000:]
    labels = svg_texts(text)
    for name in ("conv1", "bn1", "maxpool", "layer1", "layer2", "layer3", "layer4", "fc"):
        assert name in labels
    assert "layer1.0" not in labels
    assert details(text)["Parameters"] == "11,689,512"


def test_deep_link_expands_a_module(resnet_page: Path) -> None:
    labels = svg_texts(dom(resnet_page, "#expand=layer1"))
    assert {"layer1.0", "layer1.1", "layer2"} <= set(labels)
    assert "layer1" not in labels and "layer2.0" not in labels
    assert any(t.startswith("layer1 · Sequential") for t in labels)  # its frame, to close it
    deeper = svg_texts(dom(resnet_page, "#expand=layer1.0"))  # its parent opens with it
    assert {"layer1.0.conv1", "layer1.0.bn2", "add_", "layer1.1"} <= set(deeper)


def test_deep_link_selects_a_node(resnet_page: Path) -> None:
    text = dom(resnet_page, "#node=conv1&color=params")
    shown = details(text)
    assert shown["Type"] == "Conv2d" and shown["Name"] == "conv1"
    assert shown["Parameters"] == "9,408"
    assert shown["FLOPs"].startswith("236,027,904")
    assert shown["Output"] == "[1, 64, 112, 112]" and shown["Output dtype"] == "float32"
    assert shown["stride"] == "[2,2]" and shown["kernel_size"] == "[7,7]"
    assert "Parameters (log scale)" in text  # the legend follows the colour metric
    op = dom(resnet_page, "#expand=layer1.0&node=" + quote("layer1.0:add_#0", safe="")
             + "&expand=nothing")
    assert re.search(r'id="status">no module named nothing · \d+ nodes<', op)
    assert re.search(r'<h2 id="panel-title">add_</h2>', op)


def test_folded_repeats_open_and_unfold(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "mlp.html"
    model = tmp_path / "deep.py"
    model.write_text(
        "import torch\nfrom torch import nn\n\n"
        "def build():\n"
        "    return nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) "
        "for _ in range(5)])\n", encoding="utf-8")
    result = cli("graph", f"{model}:build", "8", "-o", str(path))
    assert result.exit_code == 0, result.stderr
    folded = svg_texts(dom(path))
    assert "0–4" in folded and "1" not in folded
    unfolded = svg_texts(dom(path, "#fold=0"))
    assert {"0", "1", "2", "3", "4"} <= set(unfolded)


HOSTILE = {
    "script": "</script><script>document['title']='pwned';window['pwned']=1</script>",
    "img": "<img src=x onerror=\"document['title']='pwned'\">",
    "comment": "<!--",
    "separator": "a\u2028b\u2029c",
    "backslash": "\\N\\G&amp;[x]",
    "ansi": "\x1b[31m\ttab",
}


class Trap(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict({key: nn.Linear(4, 4) for key in HOSTILE.values()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return x


def test_hostile_names_stay_text(tmp_path: Path) -> None:
    torch.manual_seed(0)
    html = interactive_html(api.prepare(Trap(), "4"))
    assert HOSTILE["script"] not in html and "<!--" not in html.split("<script>")[1]
    assert "\u2028" not in html and "\u2029" not in html
    data = embedded(html)
    assert {f"blocks.{key}" for key in HOSTILE.values()} <= set(data["modules"])
    page = tmp_path / "trap.html"
    page.write_text(html, encoding="utf-8")
    name = f"blocks.{HOSTILE['img']}"
    text = dom(page, "#expand=blocks&node=" + quote(name, safe=""))
    title = re.search(r"<title>(.*?)</title>", text)
    assert title is not None and "pwned" not in title.group(1)
    assert "<img" not in text.replace("&lt;img", "")  # never parsed as markup
    assert details(text)["Name"] == "blocks.&lt;img src=x onerror=\"document['title']='pwned'\"&gt;"
    labels = svg_texts(text)
    assert ("blocks.&lt;/script&gt;&lt;script&gt;document['title']='pwned';window['pwned']=1"
            "&lt;/script&gt;") in labels
    assert "blocks.\\N\\G&amp;amp;[x]" in labels  # no Graphviz escapes, no entity decoding
    assert "blocks.\\x1b[31m\\x09tab" in labels  # control characters shown as escapes


def test_script_json_escapes_what_ends_a_script() -> None:
    text = script_json({"k": "</script><!--\u2028\u2029&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"k": "</script><!--\u2028\u2029&"}


def test_format_option_and_mistakes(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "page.txt"
    result = cli("graph", "resnet18", "--format", "html", "-o", str(out), "-e", "layer2")
    assert result.exit_code == 0, result.stderr
    assert embedded(out.read_text(encoding="utf-8"))["initial"]["expand"] == ["layer2"]
    autograd = cli("graph", "resnet18", "--view", "autograd", "-o", str(tmp_path / "a.html"))
    assert autograd.exit_code != 0 and "modules only" in autograd.stderr
    depth = cli("graph", "resnet18", "--depth", "3", "-o", str(tmp_path / "d.html"))
    assert depth.exit_code != 0 and "--depth" in depth.stderr
    unknown = cli("graph", "resnet18", "-e", "layer9", "-o", str(tmp_path / "u.html"))
    assert unknown.exit_code != 0 and "Close names: layer4" in unknown.stderr
    assert not (tmp_path / "u.html").exists()


CLICK = """<script>
(function () {
  var clicks = 0;
  function click(label) {
    var text = Array.from(document.querySelectorAll("#stage g text"))
      .find(function (t) { return t.textContent === label; });
    var options = { bubbles: true, clientX: 5, clientY: 5 };
    text.dispatchEvent(new PointerEvent("pointerdown", options));
    text.dispatchEvent(new PointerEvent("pointerup", options));
  }
  new MutationObserver(function () {
    clicks += 1;
    if (clicks === 1) click("layer1");  // a closed module: opens in place
    else if (clicks === 2) {
      var shown = Array.from(document.querySelectorAll("#stage g text"))
        .some(function (t) { return t.textContent === "layer1.0"; });
      document.getElementById("model-title").setAttribute("data-opened", String(shown));
      click("layer1 \\u00b7 Sequential \\u00d7");  // its frame: closes it
    }
  }).observe(document.body, { attributes: true, attributeFilter: ["data-rendered"] });
})();
</script>
</body>"""


def test_clicks_open_and_close_a_module(resnet_page: Path, tmp_path: Path) -> None:
    page = tmp_path / "clicks.html"
    page.write_text(resnet_page.read_text(encoding="utf-8").replace("</body>", CLICK),
                    encoding="utf-8")
    text = dom(page)
    labels = svg_texts(text)
    assert "layer1" in labels and "layer1.0" not in labels  # opened, then closed again
    assert 'data-opened="true"' in text  # in between, layer1's blocks replaced it
    assert details(text)["Name"] == "layer1"  # the click selected it
