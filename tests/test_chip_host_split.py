"""The chip / host split (check/split.py): which nodes a target runs, what stays on the host,
what crosses between them, and how report.json / report.md show it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from graph_ops_nets import csnn_maxpool, sdsa_block, sew_block, ssa_block

from sbc_deploy.check import check, chip_host_split
from sbc_deploy.check.split import binary_nodes
from sbc_deploy.ir import OPERATION_TYPES, Input, Neuron, Output
from sbc_deploy.ir.transforms import fold_channel_affines
from sbc_deploy.pipeline import check_only
from sbc_deploy.report.render import to_html, to_markdown
from sbc_deploy.targets import load_target


def _folded(graph):
    return fold_channel_affines(graph)[0]


def _partition_is_complete(graph, split) -> None:
    hosts = [h.name for h in split.host]
    names = [*split.chip, *hosts, *split.io]
    assert sorted(names) == sorted(graph.nodes) and len(set(names)) == len(names)
    in_segments = [n for s in split.segments for n in s.nodes]
    assert sorted(in_segments) == sorted([*split.chip, *hosts])
    for segment in split.segments:
        assert all(split.placement(n) == segment.device for n in segment.nodes)


def test_spikformer_block_on_loihi2_keeps_attention_on_the_host(rng):
    graph = _folded(ssa_block(rng))
    target = load_target("loihi2")
    split = chip_host_split(graph, target)
    _partition_is_complete(graph, split)
    host = {h.name: h for h in split.host}
    assert {"vk", "vkq", "split", "k_t", "merge"} <= set(host)
    assert "product of two activations" in host["vkq"].reason
    assert host["vkq"].reason.startswith("loihi2 has no MatMul layer")
    # neurons and the dense head run on the chip (their kinds are loihi2's)
    assert {"qkv_lif", "attn_lif", "proj_lif", "head"} <= set(split.chip)
    # every chip/host edge is a transfer, counted in values per sample and step
    expected = {(s, d) for s, d in graph.edges
                if {split.placement(s), split.placement(d)} == {"chip", "host"}}
    assert {(t.source, t.destination) for t in split.transfers} == expected
    by_edge = {(t.source, t.destination): t for t in split.transfers}
    assert by_edge[("qkv_lif", "split")].values == 3 * 24 * 16
    assert by_edge[("qkv_lif", "split")].spikes and by_edge[("qkv_lif", "split")].direction == \
        "chip->host"
    assert not by_edge[("vkq", "attn_lif")].spikes      # the attention scores are graded
    assert by_edge[("mean", "head")].values == 24


def test_generic_runs_everything_and_the_check_warns_only_for_host_operations(rng):
    graph = _folded(sdsa_block(rng))
    split = chip_host_split(graph, load_target("generic"))
    assert split.all_on_chip and not split.transfers and len(split.segments) == 1
    result = check(graph, "loihi2")
    assert result.split is not None and not result.split.all_on_chip
    kinds = {v.layer: v for v in result.violations if v.rule == "supported_layer_types"}
    for name, violation in kinds.items():
        node = graph.nodes[name]
        expected = "warning" if isinstance(node, OPERATION_TYPES) else "error"
        assert violation.severity == expected, name
        if expected == "warning":
            assert "runs on the host" in violation.message
    assert {h.name for h in result.split.host} >= set(kinds)


def test_maxpool_csnn_crosses_as_spikes(rng):
    graph = _folded(csnn_maxpool(rng))
    split = chip_host_split(graph, load_target("loihi2"))
    _partition_is_complete(graph, split)
    assert [h.name for h in split.host] == ["pool1", "pool2", "gap"]
    crossings = {(t.source, t.destination): t.spikes for t in split.transfers}
    assert crossings == {("lif1", "pool1"): True, ("pool1", "conv2"): True,
                         ("lif2", "pool2"): True, ("gap", "flat"): False}
    assert [s.device for s in split.segments] == ["chip", "host", "chip", "host", "chip"]


def test_binary_nodes(rng):
    for connect, binary in (("ADD", False), ("AND", True), ("IAND", False)):
        graph = sew_block(rng, connect)
        assert ("sew" in binary_nodes(graph)) is binary, connect
    graph = ssa_block(rng)
    found = binary_nodes(graph)
    assert {"qkv_lif", "split", "q", "k_t"} <= found and "vkq" not in found
    assert all(n in found for n, node in graph.nodes.items()
               if isinstance(node, Neuron) and node.spiking)
    assert not any(isinstance(graph.nodes[n], (Input, Output)) for n in found)


@pytest.mark.parametrize("target", ["loihi2", "generic"])
def test_report_shows_the_split(rng, target):
    graph = _folded(ssa_block(rng))
    report = check_only(graph, [target])
    data = json.loads(json.dumps(report.to_dict()))
    split = data["chip_host_split"]
    assert split == data["targets"][0]["chip_host_split"]
    markdown, page = to_markdown(report), to_html(report)
    if target == "generic":
        assert split["all_on_chip"] and "Chip / host split" not in markdown
        return
    assert not split["all_on_chip"]
    assert {h["node"] for h in split["host"]} >= {"vk", "vkq"}
    assert sum(len(s["nodes"]) for s in split["segments"]) == len(graph.nodes) - 2
    section = markdown[markdown.index("### Chip / host split"):markdown.index("### Violations")]
    assert "| vkq | MatMul |" in section and "host->chip" in section
    assert "<h3>Chip / host split: where each layer goes</h3>" in page
    assert '<span class="side host">host</span>' in page
    assert np.isclose(sum(t["values_per_step"] for t in split["transfers"]),
                      sum(int(np.prod(graph.nodes[t["from"]].output_shape))
                          for t in split["transfers"]))


def test_multi_spike_neurons_are_not_binary(rng):
    graph = csnn_maxpool(rng)
    multi = graph.replace_nodes({"lif1": graph.nodes["lif1"].replace(max_spikes=3)})
    assert "pool1" in binary_nodes(graph) and "pool1" not in binary_nodes(multi)
