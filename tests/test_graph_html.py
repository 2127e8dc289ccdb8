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


def _scripted(page: Path, tmp_path: Path, script: str, name: str) -> Path:
    """``page`` with ``script`` run after each drawing (``draws`` counts them), as a user's
    typing and clicks would, so that what the page does next is what the DOM shows."""
    scripted = tmp_path / name
    scripted.write_text(page.read_text(encoding="utf-8").replace("</body>", (
        "<script>(function () { var draws = 0; new MutationObserver(function () {"
        f" draws += 1; {script} }}).observe(document.body, {{ attributes: true,"
        " attributeFilter: ['data-rendered'] }); })();</script></body>")), encoding="utf-8")
    return scripted


SEARCH = """
  var box = document.getElementById("search");
  if (draws === 1) {  // typing marks the nodes drawn whose name or type matches
    box.value = "Basic"; box.dispatchEvent(new Event("input"));
  } else if (draws === 2) {
    var marked = Array.from(document.querySelectorAll("#stage g.node path, #stage g.node polygon"))
      .filter(function (p) { return p.getAttribute("stroke") === "#d97706"; }).length;
    document.getElementById("model-title").setAttribute("data-marked", String(marked));
    box.value = "layer3.1.conv2"; box.dispatchEvent(new Event("input"));
    box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
  }
"""


def test_search_marks_matches_and_enter_opens_the_first(resnet_page: Path,
                                                         tmp_path: Path) -> None:
    text = dom(_scripted(resnet_page, tmp_path, SEARCH, "search.html"), "#expand=layer1")
    # layer1 was open: its two BasicBlocks were drawn, and both were marked
    assert 'data-marked="2"' in text
    # Enter selected the first module whose name matched, and opened what holds it
    assert details(text)["Name"] == "layer3.1.conv2"
    assert details(text)["Type"] == "Conv2d"
    labels = svg_texts(text)
    assert {"layer3.1.conv2", "layer3.0", "layer2"} <= set(labels)
    assert re.search(r'id="status">\d+ nodes · 1 match<', text)


OPEN_KIND = """
  if (draws === 1) document.getElementById("open-kind").click();
"""


def test_open_all_of_this_kind(resnet_page: Path, tmp_path: Path) -> None:
    # layer2.0 selected (a BasicBlock), then "open all of this kind": every BasicBlock opens,
    # with the Sequentials that hold them, and nothing else does
    text = dom(_scripted(resnet_page, tmp_path, OPEN_KIND, "kind.html"), "#node=layer2.0")
    labels = set(svg_texts(text))
    blocks = {f"layer{i}.{j}" for i in range(1, 5) for j in range(2)}
    assert {f"{b}.conv1" for b in blocks} <= labels
    assert {f"{b}.bn2" for b in blocks} <= labels
    assert not blocks & labels  # each block is a frame now, not a node
    assert "layer2.0.downsample" in labels  # a Sequential inside, not a BasicBlock: closed
    assert "layer2.0.downsample.0" not in labels
    assert details(text)["Name"] == "layer2.0"


BLOCKS = ("import torch\nfrom torch import nn\n\n"
          "def build():\n"
          "    return nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) "
          "for _ in range(5)])\n")


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A model of five identical blocks (folded into one node), its profile and memory plan
    as the commands write them, and the viewer page made with both."""
    folder = tmp_path_factory.mktemp("figures")
    (folder / "blocks.py").write_text(BLOCKS, encoding="utf-8")
    spec = f"{folder / 'blocks.py'}:build"
    profile = api.profile(spec, "8", runs=3, warmup=1, device="cpu").to_dict()
    extra = dict(profile["modules"][0], name="<img src=x onerror=alert(1)>", type="Linear")
    profile["modules"].append(extra)  # a module the model lacks: named, not ignored
    memory = api.memory(spec, "8", depth=9, device="cpu").to_dict()
    paths = {"profile": folder / "profile.json", "memory": folder / "memory.json"}
    for kind, data in (("profile", profile), ("memory", memory)):
        paths[kind].write_text(json.dumps(data), encoding="utf-8")
    page = folder / "blocks.html"
    result = run_cli("graph", spec, "8", "-o", str(page), "--profile", str(paths["profile"]),
                     "--memory", str(paths["memory"]))
    assert result.exit_code == 0, result.stderr
    return {"spec": spec, "page": page, "profile": profile, "memory": memory, "paths": paths,
            "stderr": result.stderr}


def _ms(value: float) -> str:  # as the page writes milliseconds
    return (f"{value:.1f}" if value >= 100 else f"{value:.2f}" if value >= 1
            else f"{value:.3f}") + " ms"


def test_profile_and_memory_in_the_panel_and_colours(figures: dict[str, Any]) -> None:
    data = embedded(figures["page"].read_text(encoding="utf-8"))
    timed = {m["name"]: m for m in figures["profile"]["modules"]}
    assert data["profile"]["modules"]["0.0"] == [timed["0.0"]["total_ms"],
                                                 timed["0.0"]["self_ms"], timed["0.0"]["share"]]
    assert data["memory"]["totals"]["training_peak_bytes"] == (
        figures["memory"]["training"]["peak_bytes"])
    # the module the model lacks is named by the command and on the page, as text
    lacking = ("profile.json has 1 module this model lacks (or of another type), left out: "
               "<img src=x onerror=alert(1)> (Linear)")
    assert lacking in " ".join(figures["stderr"].split())
    assert data["profile"]["notes"] == [lacking]

    text = dom(figures["page"], "#node=0&color=time")
    shown = details(text)
    assert shown["Time, total"] == _ms(timed["0"]["total_ms"])
    assert shown["Time, self"] == _ms(timed["0"]["self_ms"])
    assert shown["Share of forward"] == f"{timed['0']['share'] * 100:.1f}%"
    # the folded node stands for the five blocks: their own times, summed
    run = sum(timed[str(i)]["total_ms"] for i in range(5))
    assert shown["Time, all 5"] == _ms(run)
    assert shown["Parameter memory"] == "288 B"  # 8 x 8 weights and 8 biases, float32
    # Adam: exp_avg and exp_avg_sq like the weights, and a 4-byte step count per parameter
    assert shown["Gradients"] == "288 B" and shown["Optimizer state"] == "584 B"
    assert "Time, total (log scale)" in text
    assert "&lt;img src=x onerror=alert(1)&gt; (Linear)" in text  # the note, as text
    assert "<img" not in text.replace("&lt;img", "")

    model = details(dom(figures["page"], "#color=train_memory"))
    peak = figures["memory"]["training"]
    assert model["Training peak"] == (f"{peak['peak_bytes'] / 1024:.2f} KB (adam, batch 1, in "
                                      f"{peak['peak_phase']})")
    assert model["Forward time"].startswith(_ms(figures["profile"]["total_ms"]))


def test_profile_and_memory_files_are_checked(figures: dict[str, Any], cli: Cli,
                                              tmp_path: Path) -> None:
    spec, paths = figures["spec"], figures["paths"]
    out = tmp_path / "out.html"

    def refused(flag: str, data: Any, message: str) -> None:
        path = tmp_path / "given.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        result = cli("graph", spec, "8", "-o", str(out), flag, str(path))
        assert result.exit_code == 2, result.stderr
        assert message in " ".join(result.stderr.split()), result.stderr
        assert "Traceback" not in result.stderr and not out.exists()

    profile, memory = figures["profile"], figures["memory"]
    refused("--profile", "{not json", f"error: {tmp_path / 'given.json'} is not a JSON file")
    refused("--profile", [1, 2], "is JSON, but not a modelviz profile.")
    refused("--profile", memory, "is JSON, but a modelviz memory plan, not a profile.")
    refused("--memory", profile, "is JSON, but a modelviz profile, not a memory plan.")
    refused("--profile", {**profile, "modules": [{"name": "0"}]},
            "is a damaged modelviz profile: modules[0] lacks a name, type, total_ms")
    refused("--profile", {**profile, "model_type": "ResNet"},
            "is a profile of a ResNet, not of this Sequential.")
    renamed = [dict(layer, name=f"other.{layer['name']}") for layer in memory["layers"]]
    refused("--memory", {**memory, "layers": renamed},
            "is a memory plan of another model: none of its 16 modules (other. (Sequential), "
            "other.0 (Sequential), other.0.0 (Linear)...) is in Sequential.")
    svg = cli("graph", spec, "8", "-o", str(tmp_path / "g.svg"), "--profile",
              str(paths["profile"]))
    assert svg.exit_code == 2 and "--profile applies to the HTML viewer only" in svg.stderr


VIT_CLICK = """
  if (draws === 1) {
    var label = Array.from(document.querySelectorAll("#stage g text")).find(function (t) {
      return t.textContent === "encoder.layers.encoder_layer_0\\u201311"; });
    var options = { bubbles: true, clientX: 5, clientY: 5 };
    label.dispatchEvent(new PointerEvent("pointerdown", options));
    label.dispatchEvent(new PointerEvent("pointerup", options));
  }
"""


def test_vit_opens_on_its_blocks_offline(tmp_path: Path) -> None:
    """The issue's check: `graph vit_b_16 -o g.html`, `g.html#expand=encoder.layers` shows the
    blocks (folded, and all twelve unfolded), and a click opens the folded block in place."""
    page = tmp_path / "g.html"
    result = run_cli("graph", "vit_b_16", "--device", "meta", "-o", str(page))
    assert result.exit_code == 0, result.stderr
    folded = svg_texts(dom(page, "#expand=encoder.layers"))
    assert "encoder.layers.encoder_layer_0–11" in folded and "encoder.ln" in folded
    assert "EncoderBlock ×12 · 7.09M params each" in folded
    unfolded = set(svg_texts(dom(page, "#expand=encoder.layers&fold=0")))
    assert {f"encoder.layers.encoder_layer_{i}" for i in range(12)} <= unfolded
    clicked = dom(_scripted(page, tmp_path, VIT_CLICK, "click.html"), "#expand=encoder.layers")
    inside = set(svg_texts(clicked))
    assert {"encoder.layers.encoder_layer_0.ln_1", "encoder.layers.encoder_layer_0.mlp",
            "encoder.layers.encoder_layer_0.self_attention"} <= inside
    assert "encoder.layers.encoder_layer_0–11 · EncoderBlock ×12 ×" in inside  # its frame
    assert details(clicked)["Repeats"].endswith("(12 identical blocks)")
