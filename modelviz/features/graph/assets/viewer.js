// modelviz's interactive graph viewer: collapses the full-depth module graph to the modules the
// user has opened, writes DOT, lays it out with viz.js (Graphviz in WebAssembly) and shows it.
// User text (module names, types) reaches the page only through textContent, and DOT only
// through esc(), which writes it as HTML-like label text.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("modelviz-data").textContent);
  var M = data.modules;
  var state = { open: new Set(), fold: true, metric: "kind", selected: null, search: "" };
  var viz = null;
  var view = { s: 1, x: 0, y: 0, w: 0, h: 0, fitted: false };
  var units = null;  // the units drawn now: key -> unit
  var domIds = {};  // DOT id (n3, cluster_2) -> unit key or frame module
  var $ = function (id) { return document.getElementById(id); };
  var hasOwn = function (o, k) { return Object.prototype.hasOwnProperty.call(o, k); };
  var isModule = function (name) { return typeof name === "string" && hasOwn(M, name); };

  function group(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function human(v, unit) {
    var steps = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "K"]];
    for (var i = 0; i < steps.length; i++) {
      if (Math.abs(v) >= steps[i][0]) return (v / steps[i][0]).toFixed(2) + " " + steps[i][1] + (unit || "");
    }
    return String(v) + (unit ? " " + unit : "");
  }
  function ms(v) { return (v >= 100 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3)) + " ms"; }
  function bytes(v) {
    var steps = [[1073741824, "GB"], [1048576, "MB"], [1024, "KB"]];
    for (var i = 0; i < steps.length; i++) if (v >= steps[i][0]) return (v / steps[i][0]).toFixed(2) + " " + steps[i][1];
    return v + " B";
  }
  // DOT HTML-like label text: entities for markup, \xNN for control characters.
  function esc(text) {
    var out = "";
    for (var ch of String(text)) {
      var c = ch.codePointAt(0);
      if (c < 32 || (c >= 127 && c < 160)) out += "\\\\x" + (c < 16 ? "0" : "") + c.toString(16);
      else if (ch === "&") out += "&amp;";
      else if (ch === "<") out += "&lt;";
      else if (ch === ">") out += "&gt;";
      else if (ch === "\\") out += "\\\\";  // Graphviz reads \N, \G... even here; \\ is one backslash
      else if (c > 126 || ch === '"' || ch === "'" || ch === "[" || ch === "]") out += "&#" + c + ";";
      else out += ch;
    }
    return out;
  }

  // --- which modules are open -----------------------------------------------------------------
  function canon(name) {
    if (!state.fold || !isModule(name) || !name) return name;
    var parent = M[name].parent, base = name;
    if (parent) base = canon(parent) + name.slice(parent.length);
    return isModule(base) && M[base].member_of ? M[base].member_of : base;
  }
  function opened(m) {
    var r = M[m];
    return !!r && r.children.length > 0 && (r.calls === 0 || state.open.has(m));
  }
  function openAncestors(name) {
    var p = isModule(name) ? M[name].parent : null;
    while (p) { state.open.add(p); p = M[p].parent; }
  }
  function openModule(name) {
    var c = canon(name);
    if (!isModule(c) || !M[c].children.length) return false;
    state.open.add(c);
    openAncestors(c);
    return true;
  }

  // --- the graph for the current state ------------------------------------------------------
  function moduleUnit(key, m, o, repeat) {
    var r = M[m], all = state.fold ? r.lines : r.plain_lines;
    var lines = all[Math.min(o, all.length - 1)] || [];
    return { key: key, kind: "module", module: m, ordinal: o,
             title: state.fold ? r.title : r.plain_title, lines: lines,
             layer: r.kind, repeat: repeat };
  }
  function collapse() {
    var g = data.graphs[state.fold ? "fold" : "nofold"];
    var found = new Map(), of = {};
    g.nodes.forEach(function (n) {
      var unit = null, frames = [];
      for (var i = 0; i < n.path.length; i++) {
        var m = n.path[i][0], o = n.path[i][1];
        if (!opened(m)) {
          var run = state.fold ? M[m].run : null;
          unit = n.kind === "module" && i === n.path.length - 1
            ? { key: n.id, kind: "module", module: m, ordinal: o, title: n.title, lines: n.lines,
                layer: n.layer, repeat: n.repeat }
            : moduleUnit("m:" + m + "@" + o, m, o, run ? run.length : 1);
          break;
        }
        if (M[m].calls > 0) frames.push([m, o]);
      }
      if (!unit) {
        unit = { key: n.id, kind: n.kind, module: null, title: n.title, lines: n.lines,
                 layer: n.layer, repeat: n.repeat };
      }
      if (!found.has(unit.key)) { unit.frames = frames; found.set(unit.key, unit); }
      of[n.id] = unit.key;
    });
    var edges = new Map();
    g.edges.forEach(function (e) {
      var s = of[e[0]], d = of[e[1]];
      if (s === undefined || d === undefined || s === d) return;
      var k = s + "\u0000" + d;
      if (!edges.has(k)) edges.set(k, { src: s, dst: d, label: e[2] });
    });
    return { units: found, edges: Array.from(edges.values()) };
  }

  function matches(unit) {
    if (!state.search || !unit.module) return false;
    var q = state.search, m = unit.module;
    return m.toLowerCase().indexOf(q) >= 0 || M[m].type.toLowerCase().indexOf(q) >= 0;
  }
  // Figures from a profile and a memory plan (data.profile, data.memory), when the page has
  // them: a module's [total ms, self ms, share] and [parameter, gradient, optimizer state,
  // saved activation bytes].
  function figure(kind, m) {
    var o = data[kind];
    return o && hasOwn(o.modules, m) ? o.modules[m] : null;
  }
  function timeOf(m) { var f = figure("profile", m); return f ? f[0] : null; }
  function stepBytes(m) { var f = figure("memory", m); return f ? f[0] + f[1] + f[2] + f[3] : null; }
  // a folded run's node stands for every member: their own figures, summed
  function runTotal(of, m) {
    var run = state.fold ? M[m].run : null;
    if (!run) return of(m);
    var total = null;
    run.forEach(function (member) { var v = of(member); if (v !== null) total = (total || 0) + v; });
    return total;
  }
  var METRICS = { kind: "layer kind", flops: "FLOPs", params: "parameters", memory: "output memory" };
  if (data.profile) METRICS.time = "time";
  if (data.memory) METRICS.train_memory = "training memory";
  function metricValue(unit) {
    if (!unit.module) return null;
    var m = unit.module, r = M[m], times = unit.repeat || 1;
    if (state.metric === "flops") return r.flops * times;
    if (state.metric === "params") return r.params * times;
    if (state.metric === "memory") return r.output_bytes * times;
    if (state.metric === "time") return times > 1 ? runTotal(timeOf, m) : timeOf(m);
    if (state.metric === "train_memory") return times > 1 ? runTotal(stepBytes, m) : stepBytes(m);
    return null;
  }
  var RAMP = [[255, 247, 188], [254, 196, 79], [240, 59, 32]], NONE = "#f9fafb";
  function ramp(t) {
    var seg = t <= 0.5 ? 0 : 1, u = t <= 0.5 ? t * 2 : (t - 0.5) * 2, a = RAMP[seg], b = RAMP[seg + 1];
    var hex = function (i) { var v = Math.round(a[i] + (b[i] - a[i]) * u); return (v < 16 ? "0" : "") + v.toString(16); };
    return "#" + hex(0) + hex(1) + hex(2);
  }
  function fills(list) {
    var C = data.colours, out = {}, max = 0, min = Infinity;
    if (state.metric !== "kind") {
      list.forEach(function (u) { var v = metricValue(u); if (v) { max = Math.max(max, v); min = Math.min(min, v); } });
    }
    var span = max > min ? Math.log(max) - Math.log(min) : 0, empty = 0;
    list.forEach(function (u) {
      if (state.metric === "kind" || !u.module) { out[u.key] = C[u.layer] || C.other; return; }
      var v = metricValue(u) || 0;  // log scale from the smallest value drawn to the largest
      if (v <= 0) empty += 1;
      out[u.key] = v <= 0 ? NONE : ramp(span ? (Math.log(v) - Math.log(min)) / span : 1);
    });
    return { fill: out, max: max, min: max ? min : 0, empty: empty };
  }

  function frameLabel(m) {
    var r = M[m];
    return r.run && state.fold ? r.title + " · " + r.type + " ×" + r.run.length : m + " · " + r.type;
  }
  function nodeLabel(u) {
    var parts = ["<B>" + esc(u.title) + "</B>"];
    u.lines.forEach(function (l) { parts.push('<FONT POINT-SIZE="9">' + esc(l) + "</FONT>"); });
    return "<" + parts.join("<BR/>") + ">";
  }

  function toDot(graph, colour) {
    var list = Array.from(graph.units.values());
    var lines = [
      "digraph modelviz {",
      '  graph [rankdir=' + (data.rankdir === "LR" ? "LR" : "TB") + ', fontname="Helvetica", fontsize=11, nodesep=0.3, ranksep=0.35];',
      '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, margin="0.16,0.05", penwidth=0.8, color="#4b5563"];',
      '  edge [fontname="Helvetica", fontsize=8, fontcolor="#374151", color="#6b7280", arrowsize=0.6];'];
    domIds = {};
    var ids = {}, sel = state.selected !== null ? canon(state.selected) : null;
    // frames as a tree, items in the order their first node appears
    var root = { items: [] }, frames = {}, count = 0, frameCount = 0;
    list.forEach(function (u) {
      ids[u.key] = "n" + (count++);
      domIds[ids[u.key]] = { unit: u.key };
      var into = root;
      u.frames.forEach(function (f) {
        var fk = f[0] + "@" + f[1];
        if (!frames[fk]) {
          frames[fk] = { module: f[0], id: "cluster_" + (frameCount++), items: [] };
          domIds[frames[fk].id] = { frame: f[0] };
          into.items.push(frames[fk]);
        }
        into = frames[fk];
      });
      into.items.push(u);
    });
    function write(container, indent) {
      container.items.forEach(function (item) {
        if (item.items) {
          lines.push(indent + "subgraph " + item.id + " {");
          lines.push(indent + "  graph [label=<" + esc(frameLabel(item.module)) + ' &#215;>, style="rounded,dashed", color="#9ca3af", fontsize=9, labeljust=l, tooltip="click to close"];');
          write(item, indent + "  ");
          lines.push(indent + "}");
          return;
        }
        var u = item, fill = colour.fill[u.key], attrs;
        if (u.kind === "op") attrs = "label=<" + esc(u.title) + '>, shape=ellipse, fontsize=9, height=0.3, margin="0.04,0.02"';
        else if (u.kind === "input") attrs = "label=" + nodeLabel(u) + ", shape=invhouse";
        else if (u.kind === "output") attrs = "label=" + nodeLabel(u) + ", shape=house";
        else attrs = "label=" + nodeLabel(u) + (u.repeat > 1 ? ", peripheries=2" : "");
        attrs += ', style="' + (u.kind === "module" ? "rounded,filled" : "filled") + '", fillcolor="' + fill + '"';
        if (sel !== null && (u.module !== null ? u.module === sel : u.key === sel)) attrs += ', penwidth=3, color="#dc2626"';
        else if (matches(u)) attrs += ', penwidth=2.5, color="#d97706"';
        lines.push(indent + ids[u.key] + " [" + attrs + "];");
      });
    }
    write(root, "  ");
    graph.edges.forEach(function (e) {
      lines.push("  " + ids[e.src] + " -> " + ids[e.dst] + (e.label ? " [label=<&#160;" + esc(e.label) + ">]" : "") + ";");
    });
    lines.push("}");
    return lines.join("\n");
  }

  // --- drawing ------------------------------------------------------------------------------
  function applyView() {
    $("stage").style.transform = "translate(" + view.x + "px," + view.y + "px) scale(" + view.s + ")";
  }
  function fit() {
    var c = $("canvas").getBoundingClientRect();
    if (!view.w || !view.h || !c.width || !c.height) return;
    view.s = Math.min(c.width / view.w, c.height / view.h) * 0.96;
    view.x = (c.width - view.w * view.s) / 2;
    view.y = (c.height - view.h * view.s) / 2;
    applyView();
  }
  function actual() {
    var c = $("canvas").getBoundingClientRect();
    view.s = 1;
    view.x = Math.max((c.width - view.w) / 2, 0);
    view.y = Math.max((c.height - view.h) / 2, 0);
    applyView();
  }

  function render() {
    if (!viz) return;
    var graph = collapse(), colour = fills(Array.from(graph.units.values()));
    units = graph.units;
    var svg;
    try {
      svg = viz.renderSVGElement(toDot(graph, colour));
    } catch (err) {
      $("status").textContent = "layout failed: " + err;
      return;
    }
    var pt = function (v) { return parseFloat(v) * (String(v).indexOf("pt") >= 0 ? 96 / 72 : 1); };
    view.w = pt(svg.getAttribute("width")); view.h = pt(svg.getAttribute("height"));
    svg.setAttribute("width", view.w + "px"); svg.setAttribute("height", view.h + "px");
    svg.querySelectorAll("a").forEach(function (a) { a.removeAttribute("xlink:href"); a.removeAttribute("href"); });
    var stage = $("stage");
    while (stage.firstChild) stage.removeChild(stage.firstChild);
    stage.appendChild(svg);
    if (!view.fitted) { fit(); view.fitted = true; } else applyView();
    legend(colour.min, colour.max, colour.empty);
    details();
    var n = graph.units.size, hits = Array.from(graph.units.values()).filter(matches).length;
    $("status").textContent = notice + n + " nodes" + (state.search ? " · " + hits + " match" + (hits === 1 ? "" : "es") : "");
    document.body.setAttribute("data-rendered", String(n));
    writeHash();
  }

  function swatch(box, fill, text) {
    var row = document.createElement("div"), sw = document.createElement("span"), t = document.createElement("span");
    row.className = "item"; sw.className = "swatch";
    sw.style.background = fill;
    t.textContent = text;
    row.appendChild(sw); row.appendChild(t); box.appendChild(row);
  }
  function legend(min, max, empty) {
    var box = $("legend");
    while (box.firstChild) box.removeChild(box.firstChild);
    var head = document.createElement("strong");
    box.appendChild(head);
    if (state.metric === "kind") {
      head.textContent = "Layer kind";
      var present = new Set();
      units.forEach(function (u) { if (u.module) present.add(u.layer); });
      Object.keys(data.kinds).forEach(function (k) {
        if (present.has(k)) swatch(box, data.colours[k] || data.colours.other, data.kinds[k]);
      });
      return;
    }
    var names = { flops: "FLOPs", params: "Parameters", memory: "Output memory",
                  time: "Time, total", train_memory: "Training step memory" };
    head.textContent = names[state.metric] + " (log scale)";
    var bar = document.createElement("div"), ends = document.createElement("div");
    bar.className = "ramp";
    bar.style.background = "linear-gradient(to right, " + ramp(0) + ", " + ramp(0.5) + ", " + ramp(1) + ")";
    ends.className = "ends";
    var lo = document.createElement("span"), hi = document.createElement("span");
    var text = function (v) {
      return state.metric === "memory" || state.metric === "train_memory" ? bytes(v)
        : state.metric === "time" ? ms(v) : human(v);
    };
    lo.textContent = text(min);
    hi.textContent = text(max);
    ends.appendChild(lo); ends.appendChild(hi);
    box.appendChild(bar); box.appendChild(ends);
    if (empty) {
      swatch(box, NONE, state.metric === "time" ? "not timed" : state.metric === "train_memory"
        ? "not in the memory plan" : "none");
    }
  }

  function row(dl, label, value) {
    var dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = label; dd.textContent = value;
    dl.appendChild(dt); dl.appendChild(dd);
  }
  function details() {
    var dl = $("details"), title = $("panel-title");
    while (dl.firstChild) dl.removeChild(dl.firstChild);
    var name = state.selected;
    $("open-kind").disabled = true;
    if (name === null) {
      title.textContent = "Details";
      row(dl, "Model", data.model_type);
      row(dl, "Parameters", group(data.params));
      row(dl, "FLOPs", group(data.flops) + " (" + human(data.flops) + ")");
      modelFigures(dl);
      return;
    }
    var m = isModule(name) ? name : null;
    if (m === null) {
      var u = units && units.get(name);
      title.textContent = u ? u.title : name;
      if (u) { row(dl, "Node", u.kind); u.lines.forEach(function (l) { row(dl, "", l); }); }
      return;
    }
    var r = M[m];
    title.textContent = m || data.model_type;
    $("open-kind").disabled = false;
    row(dl, "Type", r.type);
    row(dl, "Name", m);
    if (r.run) row(dl, "Repeats", r.title + " (" + r.run.length + " identical blocks)");
    if (r.member_of && state.fold) row(dl, "Folded into", r.member_of);
    row(dl, "Parameters", group(r.params));
    if (r.own_params !== r.params) row(dl, "Own parameters", group(r.own_params));
    row(dl, "FLOPs", group(r.flops) + (r.flops >= 1000 ? " (" + human(r.flops) + ")" : ""));
    row(dl, "Calls", String(r.calls));
    r.inputs.forEach(function (s, i) { row(dl, r.inputs.length > 1 ? "Input " + (i + 1) : "Input", s); });
    if (r.input_dtypes.length) row(dl, "Input dtype", r.input_dtypes.join(", "));
    if (r.output) row(dl, "Output", r.output);
    if (r.output_dtypes.length) row(dl, "Output dtype", r.output_dtypes.join(", "));
    row(dl, "Output memory", bytes(r.output_bytes));
    Object.keys(r.geometry).forEach(function (k) { row(dl, k, JSON.stringify(r.geometry[k])); });
    if (r.children.length) row(dl, "Children", String(r.children.length));
    moduleFigures(dl, m);
  }
  // The profile's and the memory plan's figures: the whole model's, then a module's.
  function modelFigures(dl) {
    var p = data.profile, mem = data.memory;
    if (p) {
      var t = p.totals;
      row(dl, "Forward time", ms(t.total_ms) + " (median of " + t.runs + " runs, " + t.method + ", " + t.device + ")");
    }
    if (mem) {
      var b = mem.totals;
      if (b.training_peak_bytes !== null) row(dl, "Training peak", bytes(b.training_peak_bytes) + " (" + b.optimizer + ", batch " + b.batch_size + ", in " + b.training_peak_phase + ")");
      row(dl, "Inference peak", bytes(b.inference_peak_bytes) + " (batch " + b.batch_size + ")");
    }
  }
  function moduleFigures(dl, m) {
    var t = figure("profile", m), b = figure("memory", m), run = state.fold ? M[m].run : null;
    if (data.profile) {
      if (!t) row(dl, "Time", "not timed in " + data.profile.source);
      else {
        row(dl, "Time, total", ms(t[0]));
        row(dl, "Time, self", ms(t[1]));
        row(dl, "Share of forward", (t[2] * 100).toFixed(1) + "%");
        if (run) row(dl, "Time, all " + run.length, ms(runTotal(timeOf, m)));
      }
    }
    if (data.memory) {
      if (!b) row(dl, "Memory", "not in " + data.memory.source + " (deeper than its --depth)");
      else {
        row(dl, "Parameter memory", bytes(b[0]));
        row(dl, "Gradients", bytes(b[1]));
        row(dl, "Optimizer state", bytes(b[2]));
        row(dl, "Saved activations", bytes(b[3]));
        if (run) row(dl, "Step memory, all " + run.length, bytes(runTotal(stepBytes, m)));
      }
    }
  }
  function notes() {
    var box = $("notes");
    ["profile", "memory"].forEach(function (kind) {
      if (!data[kind]) return;
      data[kind].notes.forEach(function (text) {
        var p = document.createElement("p");
        p.className = "note";
        p.textContent = text;
        box.appendChild(p);
      });
    });
  }

  // --- the URL fragment -----------------------------------------------------------------------
  var lastHash = null, notice = "";
  function writeHash() {
    var p = new URLSearchParams();
    Array.from(state.open).sort().forEach(function (m) { p.append("expand", m); });
    if (state.selected !== null) p.append("node", state.selected);
    if (!state.fold) p.append("fold", "0");
    if (state.metric !== "kind") p.append("color", state.metric);
    var hash = "#" + p.toString();
    lastHash = hash;
    if (location.hash !== hash && !(hash === "#" && !location.hash)) {
      try { history.replaceState(null, "", hash); } catch (err) { /* some file:// setups refuse */ }
    }
  }
  function readHash() {
    var p = new URLSearchParams(location.hash.replace(/^#/, ""));
    if (!location.hash.replace(/^#/, "")) {  // no fragment: what the command line asked for
      p = new URLSearchParams();
      data.initial.expand.forEach(function (m) { p.append("expand", m); });
      if (!data.initial.fold) p.append("fold", "0");
    }
    state.fold = p.get("fold") !== "0";
    var metric = p.get("color");
    state.metric = metric !== null && hasOwn(METRICS, metric) ? metric : "kind";
    state.open = new Set();
    var missing = [];
    p.getAll("expand").forEach(function (value) {
      var names = isModule(value) ? [value] : value.split(",");
      names.forEach(function (n) { if (n && !openModule(n)) missing.push(n); });
    });
    var node = p.get("node");
    state.selected = null;
    if (node !== null) {
      var drawn = data.graphs[state.fold ? "fold" : "nofold"].nodes.some(function (n) { return n.id === node; });
      if (isModule(node)) { state.selected = node; openAncestors(canon(node)); }
      else if (drawn) state.selected = node;  // an operation, an input or an output
      else missing.push(node);
    }
    $("fold").checked = state.fold;
    $("metric").value = state.metric;
    notice = missing.length ? "no module named " + missing.join(", ") + " · " : "";
  }

  // --- interaction ----------------------------------------------------------------------------
  function select(name) { state.selected = name; render(); }
  function hit(target) {
    var g = target.closest ? target.closest("g.node, g.cluster") : null;
    if (!g) return null;
    var t = g.querySelector("title");
    return t ? domIds[t.textContent] || null : null;
  }
  var drag = null;
  $("canvas").addEventListener("pointerdown", function (e) {
    drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, moved: false };
  });
  window.addEventListener("pointermove", function (e) {
    if (!drag) return;
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; $("canvas").classList.add("dragging"); }
    if (drag.moved) { view.x = drag.vx + dx; view.y = drag.vy + dy; applyView(); }
  });
  window.addEventListener("pointerup", function (e) {
    var was = drag;
    drag = null;
    $("canvas").classList.remove("dragging");
    if (!was || was.moved) return;
    var found = hit(e.target);
    if (!found) return;
    if (found.frame !== undefined) { state.open.delete(found.frame); select(found.frame); return; }
    var u = units.get(found.unit);
    if (!u) return;
    if (!u.module) { select(u.key); return; }
    if (M[u.module].children.length && !opened(u.module)) openModule(u.module);
    select(u.module);
  });
  $("canvas").addEventListener("wheel", function (e) {
    e.preventDefault();
    var c = $("canvas").getBoundingClientRect(), f = Math.exp(-e.deltaY * 0.0015);
    var s = Math.min(Math.max(view.s * f, 0.02), 20);
    f = s / view.s;
    var cx = e.clientX - c.left, cy = e.clientY - c.top;
    view.x = cx - (cx - view.x) * f; view.y = cy - (cy - view.y) * f; view.s = s;
    applyView();
  }, { passive: false });
  $("fit").addEventListener("click", fit);
  $("actual").addEventListener("click", actual);
  $("fold").addEventListener("change", function () { state.fold = $("fold").checked; render(); });
  $("metric").addEventListener("change", function () { state.metric = $("metric").value; render(); });
  $("open-kind").addEventListener("click", function () {
    if (!isModule(state.selected)) return;
    var type = M[state.selected].type;
    Object.keys(M).forEach(function (m) { if (M[m].type === type && M[m].children.length) openModule(m); });
    render();
  });
  $("search").addEventListener("input", function () { state.search = $("search").value.trim().toLowerCase(); render(); });
  $("search").addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || !state.search) return;
    var q = state.search, first = Object.keys(M).find(function (m) {
      return m && (m.toLowerCase().indexOf(q) >= 0 || M[m].type.toLowerCase().indexOf(q) >= 0);
    });
    if (first !== undefined) { openAncestors(canon(first)); select(first); }
  });
  window.addEventListener("hashchange", function () {
    if (location.hash === lastHash) return;
    readHash(); render();
  });

  $("model-title").textContent = data.title;
  Object.keys(METRICS).forEach(function (k) {
    var option = document.createElement("option");
    option.value = k; option.textContent = METRICS[k];
    $("metric").appendChild(option);
  });
  notes();
  readHash();
  details();
  Viz.instance().then(function (instance) { viz = instance; render(); }, function (err) {
    $("status").textContent = "could not start Graphviz: " + err;
  });
})();
