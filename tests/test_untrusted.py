"""The text-neutralising functions (sbc_deploy/untrusted.py) against an independent renderer.

``markdown()`` is checked by rendering its output with markdown-it-py (a CommonMark parser with
GFM tables and strikethrough enabled): the rendered text must be the name's own characters,
with no element of its own. Cost: ~2 s (Hypothesis, 300 examples per property).
"""

from __future__ import annotations

import html
import re
import unicodedata

import pytest
from hypothesis import example, given, settings, strategies as st

from sbc_deploy.untrusted import html_text, markdown, shown, shown_lines

MarkdownIt = pytest.importorskip("markdown_it").MarkdownIt

HOSTILE = ["\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "a\nloihi2: fits", "a\r\x1b[1Aover",
           "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "**bold** _it_",
           "[click](javascript:alert(1))", "![i](http://x/y.png)", "`code`", "a | b",
           "~~gone~~", "# heading", "&lt;not a tag&gt;", "\\", "back\\slash\\*",
           "\u202eevil\u202c", "zero\u200bwidth", "line\u2028sep", "nul\x00byte",
           "surrogate\udcff", "\x9b2J", "<!-- c -->", "<http://example.com>", "x  \ny"]
UNSAFE = ("Cc", "Cf", "Zl", "Zp", "Cs")
names = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40),
                  st.text(alphabet=st.sampled_from(list("<>&*_[]()`|~#!\\\n\x1b\r -.:/a1")),
                          max_size=30))
_md = MarkdownIt("commonmark").enable("table").enable("strikethrough")


def _safe_line(text: str) -> bool:
    return all(unicodedata.category(c) not in UNSAFE for c in text)


@settings(max_examples=300, deadline=None)
@given(names)
@example("\x1b[2J")
def test_shown_is_one_line_without_control_characters(name):
    out = shown(name)
    assert _safe_line(out) and "\n" not in out and "\r" not in out
    if name.isprintable():
        assert out == name  # nothing to neutralise: unchanged


@settings(max_examples=300, deadline=None)
@given(names)
def test_shown_lines_keeps_only_newlines_and_tabs(name):
    out = shown_lines(name)
    assert all(c in "\n\t" or unicodedata.category(c) not in UNSAFE for c in out)
    assert out.count("\n") == name.count("\n")
    assert "\x1b" not in out and "\r" not in out


@settings(max_examples=300, deadline=None)
@given(names)
def test_markdown_renders_as_its_own_characters_in_a_paragraph(name):
    rendered = _md.render(f"x{markdown(name)}y")
    # the paragraph holds exactly the neutralised name as text: no tag, link, emphasis, code
    match = re.fullmatch(r"<p>x(.*)y</p>\n", rendered, flags=re.S)
    assert match and "<" not in match[1] and html.unescape(match[1]) == shown(name)


@settings(max_examples=300, deadline=None)
@given(names)
def test_markdown_stays_inside_one_table_cell(name):
    rendered = _md.render(f"| a | b |\n|---|---|\n| x{markdown(name)}y | z |\n")
    match = re.search(r"<tbody>\n<tr>\n<td>x(.*)y</td>\n<td>z</td>\n</tr>\n</tbody>", rendered,
                      flags=re.S)
    assert match and "<" not in match[1] and html.unescape(match[1]) == shown(name)


@settings(max_examples=300, deadline=None)
@given(names)
def test_html_text_is_escaped_text(name):
    out = html_text(name)
    assert _safe_line(out) and "<" not in out and ">" not in out and '"' not in out
    assert html.unescape(out) == shown(name)


def test_known_escapes():
    assert shown("a\x1b[2Jb\n") == "a\\x1b[2Jb\\n"
    assert shown("\u202e") == "\\u202e"
    assert shown_lines("ok\n\x1b[31mred") == "ok\n\\x1b[31mred"
    assert markdown("<b>x_y</b> _z") == "\\<b>x_y\\</b> \\_z"
    assert markdown("fan-in <= 256 & more") == "fan-in <= 256 & more"  # reads as written
    assert markdown("&amp; &#60;") == "\\&amp; \\&\\#60;"
