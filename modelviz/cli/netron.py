"""``modelviz netron``: open a model file in Netron's viewer, served from this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelviz.cli._console import note

HostOpt = Annotated[str, typer.Option(
    "--host", help="Address to listen on (IPv4 or IPv6); 0.0.0.0 or :: (every interface) makes "
    "it reachable from other machines.")]
PortOpt = Annotated[int, typer.Option(
    "--port", "-p", help="Port to serve on; 0 picks a free one.")]


def serve_until_stopped(path: Path, *, host: str, port: int, browse: bool) -> None:
    """Serve ``path``, print its URL on stdout, and wait for Ctrl-C."""
    from modelviz import output
    from modelviz.features.onnx import netron as netron_server

    served = netron_server.serve(path, host=host, port=port, browse=browse)
    if netron_server.binds_everywhere(host):
        note("listening on every network interface: anyone who can reach this machine can "
             "read the model")
    try:
        print(f"Netron is showing {path} at {served.url}", flush=True)  # scripts read this line
        note("press Ctrl-C to stop")
        netron_server.wait(served)
    except KeyboardInterrupt:  # before wait() was reached to catch it
        netron_server.stop(served)
    output.interrupt_handled()  # Ctrl-C is how a server stops: exit 0, not 130
    note("stopped")


def netron(
    file: Annotated[Path, typer.Argument(
        show_default=False, help="Model file: .onnx, TorchScript, .pt2, TFLite, and whatever "
        "else Netron reads.")],
    port: PortOpt = 8080,
    host: HostOpt = "127.0.0.1",
    browser: Annotated[bool, typer.Option(
        "--browser/--no-browser", help="Open the page in the default web browser.")] = True,
) -> None:
    """Serve a model file to Netron's viewer (bundled, works offline) and print its URL.

    Example: modelviz netron resnet18.onnx --port 8080
    """
    from modelviz.cli._process import imports_done

    imports_done()  # a server runs for long: the collector on, as it is after a model loads
    serve_until_stopped(file, host=host, port=port, browse=browser)
