"""Serving one model file to Netron's viewer, bundled in the ``netron`` package (works offline).

Netron's own server answers for every file in the model's folder and below, under any ``Host``
header, and logs each request. This one serves an explicit allow-list: the model's bytes under the
one URL that Netron's page asks for (``/data/NAME``) and the viewer's own static files (the flat
folder of the ``netron`` package, only the kinds a page loads, never its Python); everything else
is a 404. No file system path is ever built from a request: the decoded request path is looked up
in a table made at start, so ``..``, percent-encoding, backslashes, absolute paths and symlinks
have nothing to reach.
"""

from __future__ import annotations

import contextlib
import errno
import html
import http.server
import importlib.util
import ipaddress
import os
import re
import socket
import socketserver
import stat
import threading
import time
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote_to_bytes

from modelviz.errors import MissingToolError, ModelFileError, SpecError

DEFAULT_PORT = 8080

#: Spellings of "every interface"; ``binds_everywhere`` is the one place that decides.
EVERYWHERE = frozenset({"", "0", "0.0.0.0", "::", "[::]", "*"})
#: Host names a browser on this machine uses for a loopback server.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: The kinds of file Netron's page loads from its own folder, with the type each is sent as.
ASSET_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}
_ASSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_CHUNK = 1 << 20
_ADDRESS_FIX = "Pass an address of this machine: 127.0.0.1 (this machine only) or 0.0.0.0 (every "\
               "interface)."


@dataclass(frozen=True)
class Served:
    """A running server: ``host`` is the address it listens on, as the printed URL spells it."""

    path: Path
    host: str
    port: int
    _server: _Server | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        host = f"[{self.host.replace('%', '%25')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def binds_everywhere(host: str) -> bool:
    """Whether ``--host`` listens on every interface, so the CLI warns for every spelling of it
    (``''``, ``0``, ``*``, ``::``, and also ``00`` or a name that resolves to ``0.0.0.0``)."""
    try:
        return _is_wildcard(_listen_address(host)[1])
    except SpecError:
        return False


def serve(path: str | Path, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          browse: bool = False) -> Served:
    """Serve ``path`` to Netron's page from a background thread (``port`` 0: any free port)."""
    file = Path(path)
    if not file.is_file():
        raise ModelFileError(f"{path}: no such file.",
                             "Give a model file, e.g. one written by modelviz export-onnx.")
    if not 0 <= port <= 65535:
        raise SpecError(f"bad `port={port}`.", "Use a port from 1 to 65535, or 0 for any free one.")
    family, address, shown = _listen_address(host)
    site = _site(file)  # before binding: a broken netron install fails without a port taken
    try:
        server = _Server((address, port), family, everywhere=_is_wildcard(address))
    except OSError as exc:
        raise _bind_error(exc, shown, port) from exc
    served = Served(file, shown, int(server.server_address[1]), server)
    server.site = site
    server.hosts = _allowed_hosts(address, shown, served.port)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     name=f"netron {served.url}", daemon=True).start()
    if browse:
        webbrowser.open(_browser_url(served))
    return served


def stop(served: Served) -> None:
    """Stop answering and free the port; requests already being answered finish on their own."""
    server = served._server
    if server is not None:
        server.shutdown()
        server.server_close()


def wait(served: Served) -> None:
    """Block until Ctrl-C, then stop the server."""
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(served)


# ----------------------------------------------------------------------------------------------
# Where to listen.


def _listen_address(host: str) -> tuple[socket.AddressFamily, str, str]:
    """The socket family, the address to bind and the host as the URL shows it: IPv6 forms get
    an IPv6 socket; the usual spellings of "everywhere" one of the two wildcard addresses. The one
    place that reads ``--host``."""
    spelled = host.strip()
    bare = spelled.removeprefix("[").removesuffix("]")
    if spelled in EVERYWHERE:
        if ":" in bare:
            return socket.AF_INET6, "::", "::"
        return socket.AF_INET, "0.0.0.0", "0.0.0.0"
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return family, str(ip), str(ip)
    try:  # a name, or a legacy numeric form such as 127.1 or 00, which only the C library reads
        found = socket.getaddrinfo(bare, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise SpecError(f"cannot resolve `host={host!r}`.", _ADDRESS_FIX) from exc
    family, _, _, _, sockaddr = found[0]
    address = str(sockaddr[0])
    return family, address, address if _is_wildcard(address) else bare


def _is_wildcard(address: str) -> bool:
    return ipaddress.ip_address(address.split("%", maxsplit=1)[0]).is_unspecified


def _allowed_hosts(address: str, shown: str, port: int) -> frozenset[str] | None:
    """``Host`` values answered, lower-case; ``None``: any.

    A loopback server answers only to the names that reach it from this machine, with its port,
    so a web page on another site cannot read it through DNS rebinding. A server bound to a
    non-loopback or wildcard address is one the user chose to show to the network: which names
    reach it there (its addresses, host names, aliases) cannot be known here, so it answers any
    ``Host`` and the CLI says that anyone who can reach it can read the model.
    """
    if not ipaddress.ip_address(address.split("%", maxsplit=1)[0]).is_loopback:
        return None
    url_host = f"[{shown}]" if ":" in shown else shown
    names = {name.lower() for name in (*LOOPBACK_NAMES, url_host)}
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:  # browsers leave the default port out of Host
        hosts |= names
    return frozenset(hosts)


def _browser_url(served: Served) -> str:
    """The URL to open here: a wildcard address is no place to browse to, its loopback is."""
    if served.host == "0.0.0.0":
        return f"http://127.0.0.1:{served.port}"
    if served.host == "::":
        return f"http://[::1]:{served.port}"
    return served.url


def _bind_error(exc: OSError, shown: str, port: int) -> SpecError:
    """The one-line error, with its fix, for a socket that would not bind."""
    if exc.errno == errno.EADDRINUSE:
        return SpecError(f"port {port} on {shown} is already in use.",
                         "Stop what serves there, or pass `port=N` (`port=0` picks a free one).")
    if exc.errno == errno.EADDRNOTAVAIL:
        return SpecError(f"cannot listen on {shown}: no interface of this machine has that "
                         "address.", _ADDRESS_FIX)
    if exc.errno == errno.EACCES:
        return SpecError(f"no permission to listen on port {port} on {shown}.",
                         "Pass `port=1024` or above, or `port=0` for any free one.")
    if exc.errno == errno.EAFNOSUPPORT:
        return SpecError(f"cannot listen on {shown}: this machine has no IPv6.", _ADDRESS_FIX)
    return SpecError(f"cannot listen on {shown} port {port}: {exc.strerror or exc}.",
                     "Check `host` (127.0.0.1 for this machine only) and `port`.")


# ----------------------------------------------------------------------------------------------
# What to serve.


@dataclass(frozen=True)
class _Site:
    """The allow-list, keyed by the percent-decoded request path (bytes: file names need not be
    UTF-8): the page, the model and the viewer's files."""

    index: bytes
    model: Path
    model_url: bytes
    assets: dict[bytes, tuple[Path, str]]
    #: ONNX external-data files the model names, beside it: Netron fetches them to show weights
    data: dict[bytes, Path] = field(default_factory=dict)


def _netron_folder() -> Path:
    spec = importlib.util.find_spec("netron")
    if spec is None or not spec.submodule_search_locations:
        raise MissingToolError("the netron package is not installed.", "pip install netron")
    return Path(next(iter(spec.submodule_search_locations)))


def _site(file: Path) -> _Site:
    folder = _netron_folder()
    assets: dict[bytes, tuple[Path, str]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            kind = ASSET_TYPES.get(Path(entry.name).suffix.lower())
            if (kind and _ASSET_NAME.fullmatch(entry.name) and entry.name != "index.html"
                    and entry.is_file(follow_symlinks=False)):
                assets[b"/" + entry.name.encode()] = (Path(entry.path), kind)
    try:
        page = (folder / "index.html").read_text(encoding="utf-8")
    except OSError as exc:
        raise MissingToolError(f"netron's viewer page is missing ({exc.strerror}).",
                               "pip install --force-reinstall netron") from exc
    raw_name = os.fsencode(file.name)
    url = "/data/" + quote(raw_name)
    name = raw_name.decode("utf-8", "replace")
    meta = "\n".join(f'<meta name="{key}" content="{html.escape(value)}">' for key, value in
                     (("type", "Python"), ("file", url), ("name", name), ("identifier", name)))
    page, found = re.subn(r'<meta name="version" content="[^"]*">',
                          lambda m: f"{m.group(0)}\n{meta}", page, count=1)
    if not found:
        page = page.replace("<head>", f"<head>\n{meta}", 1)
    return _Site(page.encode("utf-8"), file.resolve(), b"/data/" + raw_name, assets,
                 _external_data(file))


#: An .onnx file this small may keep its weights in other files; a larger one holds them itself.
EXTERNAL_DATA_SCAN = 64 * 2**20


def _external_data(file: Path) -> dict[bytes, Path]:
    """The external-data files an ONNX model names (``model.onnx.data``), served beside it: only
    bare file names in the model's own folder, regular files, never links or other folders."""
    if file.suffix.lower() != ".onnx" or file.stat().st_size > EXTERNAL_DATA_SCAN:
        return {}
    try:
        import onnx

        model = onnx.load(str(file), load_external_data=False)
    except Exception:  # not ONNX after all: Netron will say so itself
        return {}
    found: dict[bytes, Path] = {}
    for location in _locations(model.graph):
        candidate = file.parent / location
        if (location not in ("", ".", "..") and "/" not in location and "\\" not in location
                and candidate.is_file() and not candidate.is_symlink()):
            found[b"/data/" + os.fsencode(location)] = candidate.resolve()
    return found


def _locations(graph: Any) -> set[str]:
    """``location`` of every external tensor in ``graph`` and its subgraphs."""
    tensors = list(graph.initializer)
    places: set[str] = set()
    for node in graph.node:
        for attribute in node.attribute:
            tensors += [attribute.t] if attribute.HasField("t") else []
            tensors += list(attribute.tensors)
            for sub in [attribute.g] if attribute.HasField("g") else []:
                places |= _locations(sub)
            for sub in attribute.graphs:
                places |= _locations(sub)
    for tensor in tensors:
        if tensor.data_location == 1:  # TensorProto.EXTERNAL
            places |= {entry.value for entry in tensor.external_data if entry.key == "location"}
    return places


# ----------------------------------------------------------------------------------------------
# The server.


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a slow download
    allow_reuse_address = os.name != "nt"  # on Windows it would let a second server share the port
    allow_reuse_port = False
    site: _Site
    hosts: frozenset[str] | None

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, *,
                 everywhere: bool) -> None:
        self.address_family = family
        self._everywhere = everywhere
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Dual-stack for ``::`` where the OS allows it; and no reverse DNS look-up of the host,
        which HTTPServer does for a name nobody reads and which can stall the start."""
        if self.address_family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                                       0 if self._everywhere else 1)
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: a browser that hangs up mid-download is no news, and stderr is the user's."""


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "modelviz-netron"
    sys_version = ""
    timeout = 30  # a client that connects and says nothing does not hold a thread for ever

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: stdout carries the URL line that scripts read."""

    def parse_request(self) -> bool:
        """Methods and ``Host`` are checked here, before any ``do_*`` could answer."""
        if not super().parse_request():
            return False
        if self.command not in ("GET", "HEAD"):
            self._reply(405, "Only GET and HEAD are answered here.\n", allow="GET, HEAD")
            return False
        hosts = self.server.hosts
        given = self.headers.get_all("Host") or []
        if hosts is not None and (len(given) != 1 or given[0].strip().lower() not in hosts):
            self._reply(403, "Forbidden: this server answers only to the address it printed.\n")
            return False
        return True

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def _answer(self) -> None:
        site = self.server.site
        if not self.path.startswith("/"):  # absolute-form and '*' targets are for proxies
            self._reply(404, "Not found.\n")
            return
        path = unquote_to_bytes(self.path.split("?", 1)[0].split("#", 1)[0])
        if path in (b"/", b"/index.html"):
            self._headers(200, ASSET_TYPES[".html"], len(site.index), no_store=True)
            self._body(site.index)
        elif path == site.model_url:
            self._send_file(site.model, "application/octet-stream", no_store=True)
        elif path in site.data:
            self._send_file(site.data[path], "application/octet-stream", no_store=True)
        elif path in site.assets:
            self._send_file(*site.assets[path], no_store=False)
        else:
            self._reply(404, "Not found.\n")

    def _send_file(self, file: Path, kind: str, *, no_store: bool) -> None:
        try:
            fd = os.open(file, _OPEN_FLAGS)
        except OSError:
            self._reply(404, "Not found.\n")
            return
        with os.fdopen(fd, "rb") as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode):
                self._reply(404, "Not found.\n")
                return
            self._headers(200, kind, info.st_size, no_store=no_store)
            if self.command != "HEAD":
                _copy(stream, self.wfile, info.st_size)

    def _reply(self, status: int, text: str, *, allow: str | None = None) -> None:
        body = text.encode()
        self._headers(status, "text/plain; charset=utf-8", len(body), no_store=True, allow=allow)
        self._body(body)

    def _headers(self, status: int, kind: str, length: int, *, no_store: bool,
                 allow: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        if no_store:
            self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()

    def _body(self, body: bytes) -> None:
        if self.command != "HEAD":
            self.wfile.write(body)


def _copy(source: BinaryIO, target: Any, size: int) -> None:
    """At most ``size`` bytes, the length promised, even if the file grows meanwhile."""
    left = size
    while left > 0:
        chunk = source.read(min(_CHUNK, left))
        if not chunk:
            break
        target.write(chunk)
        left -= len(chunk)
