"""``modelviz netron`` serves the one model file and Netron's own page, to this machine's names
only: real servers on free ports, real HTTP requests, nothing mocked."""

from __future__ import annotations

import http.client
import importlib.util
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from modelviz.features.onnx import netron as netron_server
from tests.helpers import ROOT, Cli

SECRET = b"the secret beside the model"
HIDDEN = b"the file in a folder beside the model"


def _onnx_model(path: Path) -> bytes:
    """A small valid ONNX file: one Relu."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path.read_bytes()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A model with things beside it that must stay private."""
    _onnx_model(tmp_path / "model.onnx")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "hidden.txt").write_bytes(HIDDEN)
    (tmp_path / "link.js").symlink_to(tmp_path / "secret.txt")
    return tmp_path


@pytest.fixture
def served(folder: Path) -> Iterator[netron_server.Served]:
    running = netron_server.serve(folder / "model.onnx", port=0)
    try:
        yield running
    finally:
        netron_server.stop(running)


def _request(served: netron_server.Served, path: str, *, method: str = "GET",
             host: str | None = None, no_host: bool = False,
             ) -> tuple[int, http.client.HTTPResponse, bytes]:
    """Send ``path`` exactly as written (no client-side clean-up) with ``host`` as the Host
    header: by default the one the printed URL implies; ``no_host``: none at all."""
    connection = http.client.HTTPConnection(served.host, served.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if not no_host:
            connection.putheader("Host", served.url.removeprefix("http://") if host is None
                                 else host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response, response.read()
    finally:
        connection.close()


# ----------------------------------------------------------------------------------------------
# What is served, and what is not.


def test_serves_the_model_the_page_and_its_scripts(served: netron_server.Served,
                                                   folder: Path) -> None:
    status, response, body = _request(served, "/data/model.onnx")
    assert status == 200 and body == (folder / "model.onnx").read_bytes()
    assert response.getheader("Content-Type") == "application/octet-stream"
    assert response.getheader("Cache-Control") == "no-store"
    assert response.getheader("X-Content-Type-Options") == "nosniff"

    status, response, body = _request(served, "/")
    assert status == 200 and response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert b"<title>Netron</title>" in body
    assert b'<meta name="file" content="/data/model.onnx">' in body  # where the page looks
    assert str(folder).encode() not in body  # the page names the file, not the folder

    status, response, body = _request(served, "/index.js")
    assert status == 200 and b"window.exports" in body
    assert response.getheader("Content-Type") == "text/javascript; charset=utf-8"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    status, response, _ = _request(served, "/onnx-metadata.json?version=1")  # as the page asks
    assert status == 200 and response.getheader("Content-Type") == "application/json"

    status, response, body = _request(served, "/data/model.onnx", method="HEAD")
    assert status == 200 and body == b""
    assert response.getheader("Content-Length") == str((folder / "model.onnx").stat().st_size)


def _spellings(folder: Path) -> list[str]:
    """Every way we could think of to ask for a file beside the model, or one of the package's
    own Python files."""
    secret = folder / "secret.txt"
    spec = importlib.util.find_spec("netron")
    assert spec is not None and spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    relative = os.path.relpath(secret, package)  # from the assets' folder: ../../../tmp/...
    return [
        "/secret.txt", "/data/secret.txt", "/data/sub/hidden.txt", "/sub/hidden.txt",
        "/data/../secret.txt", "/data/model.onnx/../secret.txt", "/data/./secret.txt",
        "/data/%2e%2e/secret.txt", "/data/%2E%2E%2Fsecret.txt", "/data/sub%2Fhidden.txt",
        "/data/%73ecret.txt", "/%2e%2e/secret.txt",
        f"/{relative}", f"/{quote(relative, safe='')}", f"/data/{relative}",
        "//secret.txt", "/data//secret.txt", "///data/secret.txt",
        "/data/..\\secret.txt", "/data\\..\\secret.txt", "/..%5csecret.txt",
        "/data/sub\\hidden.txt",
        f"/data/{secret}", f"/data/{quote(str(secret), safe='')}", str(secret),
        f"/{quote(str(secret), safe='')}", f"file://{secret}", f"http://localhost{secret}",
        "/data/link.js", "/link.js",
        "/server.py", "/__init__.py", "/onnx.py", "/__pycache__/server.cpython-311.pyc",
        "/data/", "/data", "/data/model.onnx%00.txt", "/index.html/../../secret.txt",
    ]


def test_nothing_else_is_served_under_any_spelling(served: netron_server.Served,
                                                   folder: Path) -> None:
    model = (folder / "model.onnx").read_bytes()
    for path in _spellings(folder):
        status, _, body = _request(served, path)
        assert status == 404, path
        assert SECRET not in body and HIDDEN not in body and model not in body, path
        assert b"import " not in body, path  # nor the package's Python


def test_a_file_name_that_needs_quoting(tmp_path: Path) -> None:
    path = tmp_path / "my model é #1?.onnx"
    data = _onnx_model(path)
    served = netron_server.serve(path, port=0)
    try:
        _, _, page = _request(served, "/")
        url = "/data/" + quote(path.name)
        assert f'<meta name="file" content="{url}">'.encode() in page
        status, _, body = _request(served, url)
        assert status == 200 and body == data
    finally:
        netron_server.stop(served)


def test_only_get_and_head(served: netron_server.Served, folder: Path) -> None:
    model = (folder / "model.onnx").read_bytes()
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"):
        status, response, body = _request(served, "/data/model.onnx", method=method)
        assert status == 405 and response.getheader("Allow") == "GET, HEAD", method
        assert model not in body, method


# ----------------------------------------------------------------------------------------------
# Host header: no DNS rebinding.


def test_a_foreign_host_header_is_refused(served: netron_server.Served, folder: Path) -> None:
    model = (folder / "model.onnx").read_bytes()
    port = served.port
    for host in ("evil.example", f"evil.example:{port}", f"localhost:{port + 1}",
                 f"127.0.0.1.evil.example:{port}", f"localhost.:{port}", f"[::2]:{port}", "",
                 None):
        for path in ("/data/model.onnx", "/"):
            status, _, body = _request(served, path, host=host, no_host=host is None)
            assert status in (403, 421), (host, path)
            assert model not in body and b"Netron" not in body, (host, path)


def test_this_machines_names_are_answered(served: netron_server.Served, folder: Path) -> None:
    model = (folder / "model.onnx").read_bytes()
    for host in (f"localhost:{served.port}", f"LocalHost:{served.port}",
                 f"127.0.0.1:{served.port}", f"[::1]:{served.port}"):
        status, _, body = _request(served, "/data/model.onnx", host=host)
        assert status == 200 and body == model, host


# ----------------------------------------------------------------------------------------------
# Quiet: stdout carries the URL line scripts read.


def test_no_request_is_logged(folder: Path, capfd: pytest.CaptureFixture[str]) -> None:
    served = netron_server.serve(folder / "model.onnx", port=0)
    try:
        for path in ("/", "/data/model.onnx", "/secret.txt"):
            _request(served, path)
        _request(served, "/", host="evil.example")
        _request(served, "/", method="POST")
        # A browser that hangs up mid-download: the server's write fails, and says nothing.
        with socket.create_connection((served.host, served.port), timeout=10) as client:
            client.sendall(f"GET /onnx-metadata.json HTTP/1.0\r\nHost: "
                           f"127.0.0.1:{served.port}\r\n\r\n".encode())
            client.recv(1024)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        deadline = time.monotonic() + 10
        while any("process_request" in t.name for t in threading.enumerate()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        netron_server.stop(served)
    assert capfd.readouterr() == ("", "")


# ----------------------------------------------------------------------------------------------
# --host: every spelling of "everywhere" warns; IPv6 binds; bad hosts are one line.


@pytest.mark.parametrize("host", ["", "0", "0.0.0.0", "::", "[::]", "*", " 0 ", "0:0::0",
                                  "00", "0.0"])
def test_every_spelling_of_everywhere(host: str) -> None:
    assert netron_server.binds_everywhere(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.1",
                                  "192.168.1.2", "no-such-host.invalid"])
def test_other_hosts_are_not_everywhere(host: str) -> None:
    assert not netron_server.binds_everywhere(host)


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _command(model: Path, host: str, visit: Callable[[str], None]) -> tuple[str, str]:
    """Run ``modelviz netron`` on ``host``, call ``visit`` with the URL it prints while it
    serves, then stop it; the URL and what it wrote on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelviz", "netron", str(model), "--host", host, "--port", "0",
         "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no URL line in 30 s"
        line = proc.stdout.readline()
        match = re.fullmatch(rf"Netron is showing {re.escape(str(model))} at (http://\S+)\n",
                             line)
        assert match, line + (proc.communicate()[1] if proc.poll() is not None else "")
        visit(match.group(1))
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    return match.group(1), err


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


@pytest.mark.parametrize(("host", "url"), [("", "http://0.0.0.0"), ("0", "http://0.0.0.0"),
                                           ("::", "http://[::]")])
def test_the_command_warns_for_every_interface(folder: Path, host: str, url: str) -> None:
    if ":" in host and not _has_ipv6_loopback():
        pytest.skip("this kernel has no IPv6")
    model = folder / "model.onnx"
    loopback = "[::1]" if ":" in host else "127.0.0.1"
    visited = []

    def visit(printed: str) -> None:
        port = printed.rsplit(":", 1)[1]
        assert _fetch(f"http://{loopback}:{port}/data/model.onnx") == model.read_bytes()
        if ":" in host and sys.platform.startswith("linux"):  # dual-stack: IPv4 reaches it too
            assert _fetch(f"http://127.0.0.1:{port}/data/model.onnx") == model.read_bytes()
        visited.append(printed)

    printed, err = _command(model, host, visit)
    assert visited and re.fullmatch(rf"{re.escape(url)}:\d+", printed)
    assert "note: listening on every network interface: anyone who can reach this machine can " \
           "read the model" in err
    assert all(line.startswith("note: ") for line in err.splitlines()), err  # no request logs


def test_the_command_serves_on_ipv6_loopback(folder: Path) -> None:
    if not _has_ipv6_loopback():
        pytest.skip("this kernel has no IPv6 loopback (::1)")
    model = folder / "model.onnx"

    def visit(printed: str) -> None:
        assert _fetch(f"{printed}/data/model.onnx") == model.read_bytes()
        assert b"<title>Netron</title>" in _fetch(printed)
        port = int(printed.rsplit(":", 1)[1])
        request = urllib.request.Request(f"{printed}/data/model.onnx",
                                         headers={"Host": f"evil.example:{port}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10).close()
        assert refused.value.code in (403, 421)
        refused.value.close()

    printed, err = _command(model, "::1", visit)
    assert re.fullmatch(r"http://\[::1\]:\d+", printed)
    assert "every network interface" not in err


def test_a_host_that_cannot_be_used_is_one_line(cli: Cli, folder: Path) -> None:
    model = str(folder / "model.onnx")
    result = cli("netron", model, "--host", "no-such-host.invalid", "--port", "0", "--no-browser")
    assert result.exit_code == 2
    assert result.stderr == ("error: cannot resolve --host 'no-such-host.invalid'. Pass an "
                             "address of this machine: 127.0.0.1 (this machine only) or 0.0.0.0 "
                             "(every interface).\n")
    result = cli("netron", model, "--host", "192.0.2.1", "--port", "0", "--no-browser")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: cannot listen on 192.0.2.1: no interface of this "
                                    "machine has that address.")
    result = cli("netron", model, "--port", "70000", "--no-browser")
    assert result.exit_code == 2 and "bad --port 70000." in result.stderr


def test_external_data_the_model_names_is_served(tmp_path: Path) -> None:
    """A model over 2 GB keeps its weights in FILE.onnx.data, which Netron fetches to show
    them: that file is served, because the model names it; a data file it does not name, or one
    it names outside its folder, is not."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "big.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="big.onnx.data", size_threshold=0)
    (tmp_path / "other.data").write_bytes(SECRET)
    running = netron_server.serve(tmp_path / "big.onnx", port=0)
    try:
        status, _, body = _request(running, "/data/big.onnx.data")
        assert status == 200 and body == (tmp_path / "big.onnx.data").read_bytes()
        for path in ("/data/other.data", "/data/../other.data", "/other.data"):
            status, _, body = _request(running, path)
            assert status == 404 and SECRET not in body
    finally:
        netron_server.stop(running)


def test_ctrl_c_stops_the_server_cleanly(folder: Path) -> None:
    """Ctrl-C is how a server is stopped: exit 0 and a note, not the 130 of an interruption."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "modelviz", "netron",
                             str(folder / "model.onnx"), "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    assert ready and proc.stdout.readline().startswith("Netron is showing")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert stderr.splitlines()[-1] == "note: stopped" and "error" not in stderr
