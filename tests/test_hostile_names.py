"""Hostile names through every output (issue 21): node and target names holding terminal escapes,
newlines, Markdown and HTML reach the terminal, logs, report.md, report.html and the file names
only neutralised (sbc_deploy/untrusted.py), and never become paths.

Hypothesis draws the names; the reports are checked with independent parsers (markdown-it-py for
report.md, html.parser for report.html). Cost: ~25 s (about 40 small NIR graphs inspected and
checked in-process, one 6-sample deploy run).
"""

from __future__ import annotations

import html
import io
import sys
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from sbc_deploy.cli import main
from sbc_deploy.errors import TargetError
from sbc_deploy.outputs import MANIFEST, subfolder, verify_set
from sbc_deploy.targets import NAME_RULE, parse_target, target_dirs
from sbc_deploy.untrusted import shown, shown_lines

nir = pytest.importorskip("nir")
MarkdownIt = pytest.importorskip("markdown_it").MarkdownIt

UNSAFE = ("Cc", "Cf", "Zl", "Zp", "Cs")
HOSTILE = ["fc\x1b[2J\x1b[H", "lif\nloihi2: fits", "<script>alert(1)<script>",
           "<img src=x onerror=alert(1)>", "**b** _i_ [l](javascript:x)", "a | b",
           "\x1b]0;title\x07", "\u202eevil", "# head", "`code`", "x\r\x1b[1Aover", "&lt;&#60;"]
# what NIR (HDF5) can hold as a node name: no '/', no NUL, no lone surrogate, not '.'
node_names = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
            min_size=1, max_size=16)).filter(lambda n: n not in (".", "input", "output"))


def _safe_text(text: str) -> bool:
    return all(c in "\n\t" or unicodedata.category(c) not in UNSAFE for c in text)


def _graph_file(path: Path, synapse: str, neuron: str) -> Path:
    """Input(4) -> Affine(3x4) -> LIF(3) -> Output, with the two names given."""
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             synapse: nir.Affine(weight=np.full((3, 4), 10.0), bias=np.zeros(3)),
             neuron: nir.LIF(tau=np.full(3, 0.02), r=np.ones(3), v_leak=np.zeros(3),
                             v_threshold=np.ones(3), v_reset=np.zeros(3)),
             "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", synapse), (synapse, neuron), (neuron, "output")]
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges,
                                 metadata={"dt": 1e-3, "reset": "zero"}))
    return path


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.handlers: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.add(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


def _tags(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


_md = MarkdownIt("commonmark").enable("table").enable("strikethrough")
_BENIGN: dict[str, set[str]] = {}


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _reports(tmp: Path, capsys, synapse: str, neuron: str) -> tuple[str, str, str]:
    """inspect + check (-o, --report) of the graph; returns terminal, report.md, report.html."""
    model = _graph_file(tmp / "m.nir", synapse, neuron)
    code, inspect = _run(capsys, ["inspect", str(model)])
    assert code == 0, inspect
    out = tmp / "out"
    code, check = _run(capsys, ["check", str(model), "--target", "loihi2,speck", "-o", str(out),
                                "--force"])
    assert code in (0, 1), check
    code, full = _run(capsys, ["check", str(model), "--target", "speck", "--report"])
    assert code in (0, 1), full
    # names never become files: the set is the fixed file names, and it verifies
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.json", "report.md", "report.html", MANIFEST])
    assert verify_set(out) == []
    return (inspect + check + full, (out / "report.md").read_text(encoding="utf-8"),
            (out / "report.html").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def benign(tmp_path_factory):
    """The element types of report.md / report.html with plain names (the allowed set)."""
    return tmp_path_factory.mktemp("benign")


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(synapse=node_names, neuron=node_names)
@example(synapse="fc\x1b[2J\x1b[31m<script>alert(1)<script>", neuron="lif\nloihi2: fits")
@example(synapse="*x*|[a](javascript:1)", neuron="<img src=x onerror=alert(1)>\x1b]0;T\x07")
def test_node_names_through_terminal_and_reports(tmp_path_factory, capsys, benign, synapse,
                                                 neuron):
    assume(synapse != neuron)
    if not _BENIGN:
        _, md, page = _reports(benign, capsys, "fc1", "lif1")
        _BENIGN["md"] = _tags(_md.render(md)).tags
        _BENIGN["html"] = _tags(page).tags
    tmp = tmp_path_factory.mktemp("names")
    terminal, md, page = _reports(tmp, capsys, synapse, neuron)
    # terminal: no control character but newlines; each name only in its neutralised form, on
    # no line of its own (a name cannot forge a verdict line)
    assert _safe_text(terminal)
    for name in (synapse, neuron):
        assert shown(name) in terminal
    assert sum(line.startswith("loihi2:") for line in terminal.splitlines()) == 1
    # report.md: no control character; rendered, no element the plain report lacks, and each
    # name shows as its own (neutralised) characters
    assert _safe_text(md)
    rendered = _md.render(md)
    found = _tags(rendered)
    assert found.tags <= _BENIGN["md"] and not found.handlers
    text = html.unescape(rendered)
    for name in (synapse, neuron):
        assert shown(name) in text
    # report.html: no control character, no new element type, no event handler, names escaped
    assert _safe_text(page)
    found = _tags(page)
    assert found.tags <= _BENIGN["html"] and not found.handlers
    for name in (synapse, neuron):  # (a newline in HTML text is only a space)
        assert any(html.escape(form(name), quote=quote) in page
                   for form in (shown, shown_lines) for quote in (True, False))


_GENERIC: dict = {}


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.sampled_from(["..", ".", "/etc", "a/../..", "a" * 65, "a\x00", "x\ny",
                                  "\x1b[2J", "con", "A-1.b_c"]), st.text(max_size=70)))
def test_target_names_are_safe_folder_names_or_refused(tmp_path_factory, name):
    if not _GENERIC:
        import tomllib

        _GENERIC.update(tomllib.loads((target_dirs()[0] / "generic.toml").read_text()))
    try:
        target = parse_target({**_GENERIC, "name": name}, file="hostile.toml")
    except TargetError as err:
        assert _safe_text(str(err)) and "\n" not in str(err)
        return
    # accepted: one plain folder name under OUTDIR, shown as it is
    assert target.name == name and shown(name) == name and len(name) <= 64
    root = tmp_path_factory.getbasetemp()
    assert subfolder(root, name).parent == root
    assert NAME_RULE


def test_deploy_summary_and_progress_show_names_neutralised(tmp_path, capsys):
    """The deploy summary (violations), the progress bar's layer detail and the verbose log."""
    from sbc_deploy.cli import _Progress
    from sbc_deploy.data import Dataset
    from sbc_deploy.data.npz import write_npz

    synapse, neuron = "fc\x1b[2J<script>", "lif\nloihi2: fits"
    model = _graph_file(tmp_path / "m.nir", synapse, neuron)
    rng = np.random.default_rng(0)
    x = (rng.random((6, 5, 4)) < 0.8).astype(np.uint8)
    data = write_npz(tmp_path / "d.npz", Dataset(x=x, y=np.zeros(6, np.int64), dt=1e-3,
                                                      source="generated"))
    code, terminal = _run(capsys, [str(model), "--target", "loihi2,speck", "--method",
                                   "magnitude", "--calib", str(data), "--eval", str(data),
                                   "--max-drop", "none", "--verbose", "-o",
                                   str(tmp_path / "out")])
    assert code in (0, 1), terminal
    assert _safe_text(terminal) and shown(neuron) in terminal
    assert sum(line.startswith("loihi2:") for line in terminal.splitlines()) == 1
    # the progress bar (tqdm) draws the layer being compressed: neutralised too
    stream = io.StringIO()
    saved, sys.stderr = sys.stderr, stream
    try:
        with _Progress(enabled=True) as progress:
            progress("compress loihi2", 0, 2, unit="layers", detail=f"{synapse} -> {neuron}")
            progress("compress loihi2", 1, 2, unit="layers", detail=f"{synapse} -> {neuron}")
    finally:
        sys.stderr = saved
    drawn = stream.getvalue()
    assert shown(synapse) in drawn and "\x1b[2J" not in drawn and "lif\nloihi2" not in drawn


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=16)))
@example(name="lif\nloihi2: fits")
@example(name="x\x1b[2J\x1b[1A\rloihi2: fits")
def test_names_inside_error_messages_are_neutralised(tmp_path_factory, capsys, name):
    """Names in the TEXT of an error (not only its location): an unknown target, an unknown
    flag (argparse), a missing model among several problems. Each error prints as its head and
    its items, one neutralised line each: no control character, no line a name forged."""
    tmp = tmp_path_factory.mktemp("err")
    routes = [(["check", "bundled:mlp", "--target", name], 1),
              (["check", "bundled:mlp", "--target", "loihi2", f"--x{name}"], 2),
              ([f"{name}.nir", "--target", f"x{name}", "-o", str(tmp / "o")], 3)]
    for argv, lines in routes:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert _safe_text(err)
        # the head, its items ("  - ..."), argparse's "did you mean" and the usage line only
        assert not any(line.startswith("loihi2:") for line in err.splitlines())
        heads = [line for line in err.splitlines() if not line.startswith("  ")]
        assert len(heads) == (2 if argv[-1].startswith("--x") else 1), err
        assert len(err.splitlines()) >= lines


# Two names that each hold every kind of structure an output could let through raw: terminal
# escapes, a newline that forges a verdict line, HTML (a tag and an attribute break-out),
# Markdown (table cell, code, emphasis, heading, link). The Q* markers occur nowhere else.
SYNAPSE = 'QA\x1b[2J\x1b[H<script>QB|`QC`" onmouseover="QD'
NEURON = "QE\nloihi2: fits\x1b]0;T\x07 # QF *QG* _QH_ [l](javascript:QI) \r\x1b[1AQJ"
SCALE = "QK<img src=x onerror=QL>\u202e~~QM~~ &amp; QN"
MARKERS = ("QA", "QB", "QC", "QD", "QE", "QF", "QG", "QH", "QI", "QJ", "QK", "QL", "QM", "QN")


def _split_graph_file(path: Path) -> Path:
    """Input(4) -> Scale(4) -> Affine(3x4) -> LIF(3, subtractive reset) -> Output: xylo runs
    the synapse and the neuron, the host the scale (a chip/host split); loihi2 (reset to zero)
    is refused."""
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             SCALE: nir.Scale(scale=np.full(4, 1.5)),
             SYNAPSE: nir.Affine(weight=np.full((3, 4), 10.0), bias=np.zeros(3)),
             NEURON: nir.LIF(tau=np.full(3, 0.02), r=np.ones(3), v_leak=np.zeros(3),
                             v_threshold=np.ones(3), v_reset=np.zeros(3)),
             "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", SCALE), (SCALE, SYNAPSE), (SYNAPSE, NEURON), (NEURON, "output")]
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges,
                                 metadata={"dt": 1e-3, "reset": "subtract"}))
    return path


def _strip_forms(text: str, forms: list[str]) -> str:
    """``text`` without every occurrence of each neutralised form, whole or cut short with an
    ellipsis (a chart label that did not fit); what is left holds a marker only where a name
    was written some other way (raw, half escaped)."""
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "")
        head = form[:2]
        at = text.find(head)
        while at >= 0:
            end = text.find("\u2026", at)
            if end < 0 or not form.startswith(text[at:end]):
                at = text.find(head, at + 1)
                continue
            text = text[:at] + text[end + 1:]
            at = text.find(head, at)
    return text


def _leaks(text: str, forms: list[str]) -> list[str]:
    rest = _strip_forms(text, forms)
    return [rest[max(0, rest.index(m) - 80):rest.index(m) + 40] for m in MARKERS if m in rest]


def test_hostile_names_through_a_compare_and_sweep_run(tmp_path, capsys):
    """A network run on two targets (ranking, placement matrix, chip/host split of the refused
    target) with a sweep: each name reaches stdout/stderr only as shown(), report.md only as
    markdown() and report.html only as html_text() (no raw newline in a tooltip, no attribute
    break-out). Cost: ~6 s."""
    from sbc_deploy.data import Dataset
    from sbc_deploy.data.npz import write_npz
    from sbc_deploy.untrusted import html_text, markdown

    model = _split_graph_file(tmp_path / "m.nir")
    rng = np.random.default_rng(0)
    x = (rng.random((6, 5, 4)) < 0.8).astype(np.uint8)
    data = write_npz(tmp_path / "d.npz", Dataset(x=x, y=np.zeros(6, np.int64), dt=1e-3,
                                                      source="generated"))
    out = tmp_path / "out"
    code, terminal = _run(capsys, [str(model), "--target", "loihi2,xylo", "--method",
                                   "magnitude", "--calib", str(data), "--eval", str(data),
                                   "--max-drop", "none", "--sparsity", "0.5,0.9", "--verbose",
                                   "-o", str(out)])
    assert code in (0, 1), terminal
    md = (out / "report.md").read_text(encoding="utf-8")
    page = (out / "report.html").read_text(encoding="utf-8")
    # the sections under test are there
    for heading in ("Ranking", "## Sweep", "### Where each layer goes",
                    "### Chip / host split"):
        assert heading in md, heading
    assert 'id="ranking"' in page and 'id="sweep"' in page and 'id="layout"' in page
    assert "Chip / host split" in page
    names = (SYNAPSE, NEURON, SCALE)
    assert _safe_text(terminal) and _safe_text(md) and _safe_text(page)
    assert shown(SYNAPSE) in terminal and shown(NEURON) in terminal
    # every name in its neutralised form, and in no other (raw, half escaped, cut short)
    missing = [(where, n) for where, text, form in (("md", md, markdown),
                                                    ("html", page, html_text))
               for n in names if form(n) not in text]
    leaks = {where: _leaks(text, [form(n) for n in names])
             for where, text, form in (("terminal", terminal, shown), ("md", md, markdown),
                                       ("html", page, html_text))}
    assert missing == [] and leaks == {"terminal": [], "md": [], "html": []}, (missing, leaks)
    # no forged verdict line anywhere, no element or handler the names brought
    assert sum(line.startswith("loihi2:") for line in terminal.splitlines()) == 1
    assert not any(line.startswith("loihi2: fits") for line in md.splitlines() + [
        line for line in page.splitlines()])
    found = _tags(page)
    assert "script" not in found.tags and not found.handlers
    rendered = _tags(_md.render(md))
    assert "script" not in rendered.tags and not rendered.handlers
