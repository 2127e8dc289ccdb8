"""The one place user strings are escaped, one helper per output language.

Module names, class names, file names and dict keys come from the user's model and files, and
can hold anything: a terminal escape, a newline, ``<img onerror=...>``, ``=cmd|...``, ``[/]``.
Every renderer of a language goes through its helper here, so such a string is always shown as
text, never obeyed as a control sequence, a formula, markup or code. No torch here: the CLI's
error lines use ``printable`` before any model is loaded.
"""

from __future__ import annotations

import re
import unicodedata

#: Characters that steer a terminal, a parser or the reading direction rather than show a glyph:
#: C0 and C1 controls (ESC starts terminal escape sequences), line and paragraph separators, and
#: the bidirectional overrides that make text read differently from what it holds.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                  "\u2066\u2067\u2068\u2069")


def _invisible(char: str) -> bool:
    """Controls, separators, bidi overrides, lone surrogates (which cannot be encoded) and
    noncharacters (which Graphviz and XML refuse)."""
    code = ord(char)
    return (unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs") or char in _BIDI
            or 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE)


def printable(text: str) -> str:
    """``text`` with every control character written as its escape (``\\x1b``, ``\\n``,
    ``\\u202e``): a name from a model or a file is shown as it is, never obeyed."""
    if text.isprintable() or not any(_invisible(c) for c in text):
        return text
    return "".join(_escaped(c) if _invisible(c) else c for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if char in "\t\n\r":
        return repr(char)[1:-1]
    return f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000
                                                  else f"\\U{code:08x}")


# One helper per output language that other programs read: every renderer of that language uses
# it, so a name from the user's model is shown as text, never run as a formula, markup or code.

#: What a spreadsheet reads as the start of a formula (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """A CSV text cell that a spreadsheet shows rather than evaluates: a leading ``=``, ``+``,
    ``-``, ``@``, tab or carriage return gets OWASP's ``'`` prefix. For text, never numbers."""
    shown = printable(text)
    return "'" + shown if text.startswith(_FORMULA_START) else shown


_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_code(text: str, *, table: bool = True) -> str:
    """``text`` as one Markdown code span, whatever it holds: the fence is longer than any run of
    backticks inside (CommonMark), and ``|`` is escaped when the span sits in a GFM table cell,
    where an unescaped pipe would end the cell even inside code."""
    shown = printable(text)
    if table:
        shown = shown.replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", shown)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space from each side when both are there: pad so that it strips ours
    pad = (not shown or shown[0] == "`" or shown[-1] == "`"
           or (shown[0] == " " and shown[-1] == " " and bool(shown.strip(" "))))
    space = " " if pad else ""
    return f"{fence}{space}{shown}{space}{fence}"


def md_text(text: str) -> str:
    """``text`` as inert Markdown inline text (a table cell, a heading): HTML as entities, and
    backslashes before what could start code, emphasis, strikethrough, a link or an image, or end
    a table cell. Ordinary names and shapes come out unchanged (``sample_models``, ``[1, 4]``):
    an underscore inside a word emphasises nothing, and no link is made without ``](`` or ``][``
    (there are no link definitions for a bare ``[text]`` to refer to)."""
    shown = printable(text)
    out: list[str] = []
    last = len(shown) - 1
    for i, char in enumerate(shown):
        if char in _HTML_ENTITIES:
            out.append(_HTML_ENTITIES[char])
        elif char in "\\`*~|":
            out.append("\\" + char)
        elif char == "_" and not (0 < i < last and shown[i - 1].isalnum()
                                  and shown[i + 1].isalnum()):
            out.append("\\_")
        elif char == "]" and shown[i + 1:i + 2] in ("(", "["):
            out.append("\\]")
        else:
            out.append(char)
    return "".join(out)


def dot_id(text: str) -> str:
    """A quoted DOT id (node, cluster, graph name). Escaped before control characters are written
    out, so that two different names can never become the same id."""
    return '"' + printable(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def dot_label(text: str) -> str:
    """A quoted DOT label (an escString): control characters shown as escapes, whose backslash,
    like any other, is doubled so that Graphviz shows it instead of reading ``\\n`` or ``\\N``."""
    return '"' + printable(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_html(text: str) -> str:
    """Text inside a Graphviz HTML-like label, which is XML: entities for ``&<>"``, control
    characters as escapes (Graphviz rejects the label if they are left raw), and backslashes
    doubled: Graphviz still expands ``\\N`` (the node's id) and ``\\G`` in HTML text, and no
    entity stops it (``&#92;N`` shows the id too)."""
    shown = printable(text).replace("\\", "\\\\")
    return (shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def html_text(value: object) -> str:
    """Text or an attribute value in an HTML page: entities for ``&<>"'``, controls escaped."""
    import html

    return html.escape(printable(str(value)), quote=True)
