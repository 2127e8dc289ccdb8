"""The ``modelviz`` process: the garbage collector kept out of the heavy imports, a quick exit.

Importing torch and torchvision makes some 330,000 objects that live until the process ends.
Python's cyclic collector, set off by allocation counts, walks all of them again and again
while they are imported (0.4 s of a summary), and once more, with every module's teardown, at
exit (0.5 s); none of it frees anything. So the model is loaded (torch, torchvision,
transformers imported, the model built) with the collector off, and what that made is then
frozen out of its sight (``gc.freeze``); and the program ends with ``os._exit`` once the
threads are done, the exit handlers have run and stdout and stderr are flushed, the three
things Python's own exit does before it tears everything down.

The collector is off from the program's start (``start``): a command may import torch before
it loads its model. Only the program does this: a test or a script that calls the CLI in its
own process keeps its collector as it was.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

#: Set by the ``modelviz`` program, which owns its process and ends it with ``exit_now``.
owns_process = False
#: The program started with the collector off (``start``): the first ``heavy_imports`` turns
#: it on again, whoever imported torch first (a command may import it before loading).
_off_from_start = False

#: Python's exit status when flushing stdout fails at exit (``Py_RunMain``).
_FLUSH_FAILED = 120


def start() -> None:
    """The program begins: the collector is off until the model is loaded (``heavy_imports``,
    or ``imports_done`` for a command that loads none)."""
    global owns_process, _off_from_start  # noqa: PLW0603 - the one process's state
    owns_process = True
    if gc.isenabled():
        gc.disable()
        _off_from_start = True


def imports_done() -> None:
    """What the program imported and built so far stays: frozen out of the collector's
    sight, and the collector on again (it was off since ``start``)."""
    global _off_from_start  # noqa: PLW0603 - the one process's state
    if owns_process:
        gc.freeze()
    if _off_from_start:
        _off_from_start = False
        gc.enable()


@contextmanager
def heavy_imports() -> Iterator[None]:
    """No collection while torch and the model come in; in the program, what came in is then
    frozen, so later collections (a graph's layout, a report's files) do not walk it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        imports_done()
        if enabled:
            gc.enable()


def _status(code: object) -> int:
    """The exit status ``sys.exit(code)`` gives: None is 0, an int is itself, anything else
    is printed to stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _join_threads() -> None:
    """What Python's exit does first: ``threading._shutdown`` runs the callbacks that tell
    thread pools to stop (``threading._register_atexit``: concurrent.futures' workers, which
    torch.compile's inductor starts) and then joins the threads that are not daemons. Joining
    them without those callbacks waits forever on workers idling for their next task."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
        return
    current = threading.current_thread()  # pragma: no cover - every CPython since 3.0 has it
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon and thread.is_alive():
            thread.join()


def exit_now(code: object) -> NoReturn:
    """End the process as Python's exit would, less the collection and the teardown of every
    module: wait for the threads that are not daemons, run the exit handlers (temporary folders
    removed, logs closed), flush stdout and stderr, then ``os._exit``."""
    status = _status(code)
    _join_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            if stream is sys.stdout:
                status = _FLUSH_FAILED  # a closed pipe: what Python's own exit reports
    os._exit(status)
