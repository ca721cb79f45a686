"""Neutralise untrusted text (names and strings read from files) where it is shown.

Names in a model or target file (node names, descriptions, sources) and paths are hostile until
shown safely: an ANSI escape would clear the terminal or rewrite earlier lines, a newline would
forge a verdict line or a Markdown heading, ``<script>`` would run where report.md is rendered.
Every printer and renderer passes such text through one of these functions:

- :func:`shown` -- one line for the terminal, logs and plain-text reports: every control
  character (C0, DEL, C1), Unicode format character (bidirectional overrides, zero-width
  characters), line or paragraph separator and lone surrogate is written as a visible escape
  (``\\n``, ``\\x1b``, ``\\u202e``). Printable text, backslashes included, is kept as it is.
- :func:`shown_lines` -- the same for text of several lines that this tool composed (error
  messages, whole reports): newlines and tabs are kept, every other control character is escaped.
  The CLI passes everything it prints through it, so no escape sequence reaches the terminal.
- :func:`markdown` -- :func:`shown`, then every character that could start Markdown or HTML
  structure escaped with a backslash (``\\ ` * [ | ~ #`` always; ``<`` before a letter, ``/``,
  ``!`` or ``?``; ``&`` before an entity; ``_`` outside a word): the name renders as its own
  characters in any CommonMark / GitHub renderer (no tag, link, emphasis, code, table cell or
  heading of its own) and reads the same in a terminal, minus the backslashes.
- :func:`html_text` -- :func:`shown`, then :func:`html.escape` (quotes included).

Example::

    >>> shown("fc1\\x1b[2J\\nloihi2: fits")
    'fc1\\\\x1b[2J\\\\nloihi2: fits'
    >>> markdown("<img src=x onerror=alert(1)> | *x*")
    '\\\\<img src=x onerror=alert(1)> \\\\| \\\\*x\\\\*'
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["html_text", "markdown", "shown", "shown_lines"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Cc: C0, DEL, C1 controls; Cf: format (bidi overrides, zero-width); Zl/Zp: separators;
# Cs: lone surrogates (undecodable bytes of a file name under surrogateescape).
_UNSAFE = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))
# A backslash before any ASCII punctuation makes CommonMark show the character itself. Always
# escaped: \ ` * [ | ~ # ('[' opens every link, image, footnote and reference definition, so
# ']' needs none); '<' only where it could open a tag, comment or autolink (before a
# letter, '/', '!' or '?'; so "<= 256" stays as it is); '&' only where it could start an entity;
# '_' only where it could open or close emphasis (not between two letters or digits).
_MARKDOWN = re.compile(r"[\\`*\[|~#]|<(?=[A-Za-z/!?])|&(?=[#A-Za-z0-9])"
                       r"|(?<![^\W_])_|_(?![^\W_])")


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else \
        f"\\U{code:08x}"


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE


def shown(text: object) -> str:
    """``text`` (any value, ``str()``-ed) as one line with every control character escaped."""
    value = str(text)
    if value.isprintable():  # the common case: nothing to do (fast)
        return value
    return "".join(_escape(c) if _unsafe(c) else c for c in value)


def shown_lines(text: object) -> str:
    """``text`` with newlines and tabs kept and every other control character escaped."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(_escape(c) if c not in "\n\t" and _unsafe(c) else c for c in value)


def markdown(text: object) -> str:
    """``text`` as one line of Markdown that renders as its own characters (no HTML, no
    emphasis, links, code, table cells or headings of its own)."""
    return _MARKDOWN.sub(lambda m: "\\" + m[0], shown(text))


def html_text(text: object) -> str:
    """``text`` as one line of HTML text (control characters escaped, then HTML-escaped)."""
    return html.escape(shown(text))
