"""A model's inspection pushed to a running Visdom server, beside the plots of its training.

What is pushed is ``features.dashboard``'s (shared with TensorBoard and W&B), one window each:
the layer table and the totals as HTML text windows, the module graph as SVG, one image window
per activation card, one bar chart per parameter tensor (the histogram's bins: a few numbers,
not the tensor). Visdom shows a text window's content as HTML, so every cell is escaped: module
names are the user's strings. Window ids are fixed per environment, so pushing the model again
replaces its windows instead of piling new ones up.

The server is checked before the model is loaded: none listening is one error that says how to
start one. ``python -m visdom.server`` fetches its page's scripts from the web the first time;
the API this module talks to needs none of them.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from modelviz.core.formatting import count, human, human_bytes
from modelviz.core.stages import Stage, quiet
from modelviz.errors import MissingToolError, ServiceError, SpecError, one_line
from modelviz.escape import html_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from modelviz.core.session import Prepared
    from modelviz.features.dashboard.content import DashboardContent

__all__ = ["DEFAULT_PORT", "DEFAULT_SERVER", "EXTRA", "VisdomPush", "check_server",
           "default_env", "log_run", "table_html", "totals_html", "window_id"]

EXTRA = "pip install 'torch-modelviz[visdom]'"
DEFAULT_SERVER = "http://127.0.0.1"
DEFAULT_PORT = 8097
START = "python -m visdom.server"
#: Seconds to wait for the server to accept a connection.
CONNECT_TIMEOUT = 3.0


@dataclass
class VisdomPush:
    """What was pushed where, and what could not be (with why)."""

    url: str
    env: str
    windows: dict[str, str] = field(default_factory=dict)  # window id -> what it shows
    images: list[str] = field(default_factory=list)
    histograms: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "env": self.env, "windows": self.windows,
                "images": self.images, "histograms": len(self.histograms),
                "skipped": self.skipped}


def _visdom() -> Any:
    try:
        return importlib.import_module("visdom")
    except ImportError as exc:
        raise MissingToolError("the visdom package is not installed.",
                               f"Install the extra: {EXTRA}") from exc


def default_env(model: str) -> str:
    """``modelviz_`` and the model's name: Visdom groups environments by what comes before the
    first ``_``, so every model pushed sits under ``modelviz`` in its list."""
    stem = re.sub(r"[^A-Za-z0-9.-]+", "-", model).strip("-.") or "model"
    return f"modelviz_{stem}"


def _address(server: str, port: int) -> tuple[str, str]:
    """The server's host, and its URL with the port."""
    parts = urlsplit(server if "://" in server else f"http://{server}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") \
            or parts.port is not None:
        raise SpecError(f"bad `server={server}`: give a scheme and a host only.",
                        "E.g. `server=http://127.0.0.1`, with the port in `port`.")
    if not 1 <= port <= 65535:
        raise SpecError(f"bad `port={port}`.", "Use a port from 1 to 65535.")
    return parts.hostname, f"{parts.scheme}://{parts.netloc}:{port}"


def check_server(server: str = DEFAULT_SERVER, port: int = DEFAULT_PORT) -> str:
    """Fail before any work when the visdom package is missing or nothing listens there;
    returns the server's URL."""
    _visdom()
    host, url = _address(server, port)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise ServiceError(f"no Visdom server answers at {url} ({exc.strerror or exc}).",
                           f"Start one with `{START}` (it listens on port {DEFAULT_PORT}), "
                           "or give its `server` and `port`.") from None
    return url


def window_id(kind: str, name: str = "") -> str:
    """A window's id: its kind, and a digest of the (user's) name it shows, so that an id is
    always plain and the same name always lands in the same window."""
    if not name:
        return f"modelviz-{kind}"
    return f"modelviz-{kind}-{hashlib.sha1(name.encode()).hexdigest()[:12]}"


_TABLE_STYLE = ("<style>.mv td,.mv th{padding:1px 8px;border-bottom:1px solid #ddd}"
                ".mv td.n{text-align:right;font-variant-numeric:tabular-nums}</style>")
_NUMERIC = {"params", "trainable_params", "flops", "output_bytes", "depth", "calls"}


def _cell(column: str, value: Any) -> str:
    if column in ("params", "trainable_params"):
        return count(int(value))
    if column == "flops":
        return human(value) if value else "–"
    if column == "output_bytes":
        return human_bytes(value) if value else "–"
    return html_text(value)


def table_html(content: DashboardContent) -> str:
    """The layer table as one HTML table, every cell escaped; names indented by depth."""
    head = "".join(f"<th>{html_text(c)}</th>" for c in content.columns)
    lines = [_TABLE_STYLE, f"<b>{html_text(content.model)}</b> "
             f"({html_text(content.summary.trace.model_type)})",
             f"<table class='mv'><thead><tr>{head}</tr></thead><tbody>"]
    for row in content.rows:
        cells = []
        for column, value in zip(content.columns, row, strict=True):
            css = " class='n'" if column in _NUMERIC else ""
            text = _cell(column, value)
            if column == "layer":
                text = "&nbsp;&nbsp;" * (int(row[2]) - 1) + text
            cells.append(f"<td{css}>{text}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def totals_html(content: DashboardContent) -> str:
    """The totals as a two-column HTML table."""
    rows = []
    for key, value in content.totals.items():
        shown = count(int(value)) if isinstance(value, int) else f"{value:,.2f}"
        rows.append(f"<tr><td>{html_text(key)}</td><td class='n'>{shown}</td></tr>")
    return (f"{_TABLE_STYLE}<b>{html_text(content.model)}</b>"
            f"<table class='mv'>{''.join(rows)}</table>")


@contextmanager
def _quiet_client() -> Iterator[None]:
    """The Visdom client logs warnings of its own (no incoming socket, a new session): they
    are not the user's business."""
    client_log = logging.getLogger("visdom")
    level = client_log.level
    client_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        client_log.setLevel(level)


def _push(content: DashboardContent, *, server: str, port: int, env: str,
          histograms: bool) -> VisdomPush:
    import numpy as np

    visdom = _visdom()
    host, url = _address(server, port)
    result = VisdomPush(url=url, env=env)
    result.skipped.update(content.skipped)
    scheme = urlsplit(url).scheme
    with _quiet_client():
        try:
            viz = visdom.Visdom(server=f"{scheme}://{host}", port=port, env=env,
                                raise_exceptions=True, use_incoming_socket=False)
            for kind, html in (("totals", totals_html(content)),
                               ("layers", table_html(content))):
                viz.text(html, win=window_id(kind), env=env, opts={"title": kind})
                result.windows[window_id(kind)] = kind
            if content.graph_svg is not None:
                viz.svg(svgstr=content.graph_svg, win=window_id("graph"), env=env,
                        opts={"title": "module graph"})
                result.windows[window_id("graph")] = "module graph"
            for card in content.cards:
                win = window_id("activations", card.name)
                height, width = card.pixels.shape[:2]
                viz.image(card.pixels.transpose(2, 0, 1), win=win, env=env,
                          opts={"title": f"activations/{card.name}",
                                "caption": f"{card.name} ({card.type})",
                                "width": width, "height": height})
                result.windows[win] = f"activations/{card.name}"
                result.images.append(card.name)
            if histograms:
                for histogram in content.histograms():
                    win = window_id("parameters", histogram.name)
                    viz.bar(X=np.asarray(histogram.counts), Y=np.asarray(histogram.centres),
                            win=win, env=env,
                            opts={"title": f"parameters/{histogram.name}",
                                  "xlabel": "value", "ylabel": "count"})
                    result.windows[win] = f"parameters/{histogram.name}"
                    result.histograms.append(histogram.name)
        except (ConnectionError, OSError) as exc:
            raise ServiceError(f"the Visdom server at {url} stopped answering: "
                               f"{one_line(exc, limit=160)}.",
                               f"Check it is still running (`{START}`).") from None
    return result


def log_run(prepared: Prepared, *, server: str = DEFAULT_SERVER, port: int = DEFAULT_PORT,
            env: str | None = None, layers: Sequence[str] = (), types: Sequence[str] = (),
            graph: bool = True, histograms: bool = True, max_channels: int = 16,
            memory: bool = False, train: bool = False, stage: Stage = quiet) -> VisdomPush:
    """Push a prepared model to Visdom, from one pass (``features.dashboard``)."""
    from modelviz.features.dashboard.content import build_content

    check_server(server, port)
    content = build_content(prepared, what="a Visdom push", layers=tuple(layers),
                            types=tuple(types), max_channels=max_channels, train=train,
                            graph=graph, page=False, memory=memory, stage=stage)
    with stage("Pushing to Visdom"):
        return _push(content, server=server, port=port,
                     env=env if env is not None else default_env(content.model),
                     histograms=histograms)
