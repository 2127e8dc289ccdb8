"""Serving a model file to Netron's viewer, bundled in the ``netron`` package, so it works offline.

Netron's own ``serve`` logs through the root logger and raises a bare ``OSError`` when the port is
taken; here the port problem becomes a one-line error with the fix, and the URL is ours to print.
"""

from __future__ import annotations

import errno
import logging
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path

from modelviz.errors import ModelFileError, SpecError

DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Served:
    path: Path
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def serve(path: str | Path, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          browse: bool = False) -> Served:
    """Start Netron's server for ``path`` in a background thread (``port`` 0: any free port)."""
    import netron

    file = Path(path)
    if not file.is_file():
        raise ModelFileError(f"{path}: no such file.",
                             "Give a model file, e.g. one written by modelviz export-onnx.")
    if not 0 <= port <= 65535:
        raise SpecError(f"bad --port {port}.", "Use a port from 1 to 65535, or 0 for any free one.")
    logging.getLogger("netron").setLevel(logging.WARNING)  # we print the URL ourselves
    try:
        address = netron.serve(str(file), address=(host, port), browse=False)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SpecError(f"port {port} on {host} is already in use.",
                            "Stop what serves there, or pass --port N (--port 0 picks a free "
                            "one).") from exc
        raise SpecError(f"cannot serve on {host}:{port}: {exc.strerror or exc}.",
                        "Check --host (127.0.0.1 for this machine only) and --port.") from exc
    served = Served(file, str(address[0]), int(address[1]))
    if browse:
        webbrowser.open(served.url)
    return served


def stop(served: Served) -> None:
    import netron

    netron.stop((served.host, served.port))


def wait(served: Served) -> None:
    """Block until Ctrl-C, then stop the server."""
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(served)
