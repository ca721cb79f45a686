"""Fan-in where it decides (issue 20): a per-neuron cap that forces pruning or is broken, and
Loihi's axons-in-per-core limit that splits a layer over cores, named in the strip and in the
per-layer table. Cost: one magnitude deploy of the bundled MLP (~5 s CPU) and check-only runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nir
import numpy as np
import pytest

from sbc_deploy.bundled import load_bundled_model
from sbc_deploy.cli import main
from sbc_deploy.pipeline import check_only
from sbc_deploy.report.model import CoreRow, LayerRow, TargetReport
from sbc_deploy.report.summary import fan_in_item, fan_in_text, strip

TARGETS = Path(__file__).resolve().parents[1] / "targets"


def _capped_target(tmp_path: Path, cap: int) -> Path:
    """Loihi 2's file with a per-neuron fan-in cap of ``cap`` (a user's own target file)."""
    text = (TARGETS / "loihi2.toml").read_text()
    text = text.replace('name = "loihi2"', 'name = "capped"')
    text = re.sub(r'\[limits\.max_fan_in\]\nvalue = "none"\nevidence = "estimate"',
                  f'[limits.max_fan_in]\nvalue = {cap}\nevidence = "definition"', text)
    assert f"value = {cap}" in text
    path = tmp_path / "capped.toml"
    path.write_text(text)
    return path


def _layer(name, fan, dense=None):
    return LayerRow(name, "Affine", (10, 2312), 0.5, 8, fan, 100, 200, neuron=f"{name}_lif",
                    fan_in_max_dense=dense, cores=(0,))


def _report(layers, limits, violations=(), cores=()):
    return TargetReport("t", "", "sbc", tuple(layers), tuple(violations), 1, 128, cores=cores,
                        limits=limits)


def test_fan_in_is_named_only_where_it_decides():
    capped = _report([_layer("fc1", 1024, dense=2312), _layer("fc2", 300, dense=300)],
                     {"max_fan_in": 1024})
    item = fan_in_item(capped)
    assert item.value == "2,312 -> 1,024 / 1,024" and "pruned fc1 -> fc1_lif" in item.detail
    assert fan_in_text(capped, capped.layers[0]) == (
        "1,024 / 1,024 inputs per neuron (capped: 2,312 before)")
    assert fan_in_text(capped, capped.layers[1]) == "300 / 1,024 inputs per neuron"
    loose = _report([_layer("fc1", 1000, dense=1000)], {"max_fan_in": 1024})
    assert fan_in_item(loose) is None  # under the cap before and after: it decides nothing
    assert fan_in_item(_report([_layer("fc1", 5000)], {})) is None  # no limit
    # a neuron with more inputs than a Loihi core takes: fan-in decides, and breaks the rule
    over = _report([_layer("fc1", 5000, dense=5000)], {"max_in_axons": 4096})
    item = fan_in_item(over)
    assert item.value == "5,000 / 4,096" and "axons in per core: 1 layer(s) over" in item.detail
    assert fan_in_text(over, over.layers[0]).endswith("(over the limit)")


def test_an_axon_bound_layer_says_fan_in_sets_its_cores():
    cores = tuple(CoreRow(i, "fc1_lif", 100, 1000, 0.01, 0.1, 8192, 10_000, in_axons=4096,
                          in_axon_capacity=4096, binding="in-axons") for i in range(3))
    t = _report([_layer("fc1", 2312, dense=2312)], {"max_in_axons": 4096}, cores=cores)
    t = TargetReport(**{**t.__dict__, "deciding_limit": "axons in per core"})
    assert fan_in_text(t, t.layers[0]) == (
        "2,312 per neuron; a core takes 4,096 axons in (sets its cores)")
    detail = strip(t)[1].detail
    assert detail == ("deciding limit: axons in per core (fan-in: the inputs of fc1 -> fc1_lif "
                      "fill axons in (4,096) first on its 3 cores)")


@pytest.fixture(scope="module")
def capped_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("capped")
    target = _capped_target(tmp, 1024)
    out = tmp / "out"
    code = main(["--target", str(target), "--method", "magnitude", "--eval-limit", "16",
                 "--export", "nir", "--max-drop", "none", "--quiet", "-o", str(out)])
    return code, target, out


def test_a_fan_in_cap_that_forces_pruning_is_named(capped_run):
    code, target, out = capped_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    linear1 = next(layer for layer in report["layers"] if layer["name"] == "linear1")
    assert linear1["fan_in_max_dense"] == 2 * 34 * 34 and linear1["fan_in_max"] <= 1024
    # counted again from the exported file: no neuron keeps more than 1,024 inputs
    exported = nir.read(str(out / "model.nir"))
    weight = np.asarray(exported.nodes["linear1"].weight)
    assert int(np.count_nonzero(weight, axis=1).max()) == linear1["fan_in_max"]
    md = (out / "report.md").read_text()
    assert re.search(r"\| fan-in \(deciding\) \| 2,312 -> 1,0\d\d / 1,024 \| the cap of 1,024 "
                     r"inputs per neuron pruned linear1 -> leaky2", md)
    assert "(capped: 2,312 before)" in md and "(capped: 2,312 before)" in (
        out / "report.html").read_text()


def test_a_broken_fan_in_cap_decides_the_verdict(capped_run, capsys):
    _, target, _ = capped_run
    report = check_only(load_bundled_model("nmnist_mlp"), [target])
    t = report.targets[0]
    assert not t.fits
    item = next(i for i in strip(t) if i.label == "fan-in (deciding)")
    assert item.value == "2,312 / 1,024" and item.good is False
    assert "1 layer(s) over the limit, most linear1 -> leaky2" in item.detail
