"""The whole pipeline on a spike-driven Transformer block (issue 18): its Q, K, V, projection
and head layers compress, and the report shows the chip / host split per target."""

from __future__ import annotations

import json

import numpy as np
import torch
from graph_ops_nets import sdsa_block

from sbc_deploy.data.dataset import Dataset
from sbc_deploy.ir.transforms import fold_channel_affines
from sbc_deploy.pipeline import DeployRequest, deploy
from sbc_deploy.sim import simulate
from sbc_deploy.sim.decode import classify, default_decoding


def test_sdsa_block_compresses_and_reports_the_split(rng, tmp_path):
    graph, folds = fold_channel_affines(sdsa_block(rng))
    assert len(folds) == 4                       # q, k, v and projection BatchNorms
    x = rng.normal(0.6, 0.5, (48, 6, 8, 4, 4)).astype(np.float32)     # [N, T, C, H, W]
    out = simulate(graph, torch.from_numpy(x.transpose(1, 0, 2, 3, 4))).outputs["out"]
    labels = classify(out, default_decoding(graph)).numpy()           # the dense predictions
    data = Dataset(x, labels, graph.dt, "synthetic")
    result = deploy(DeployRequest(model=graph, targets=("generic", "loihi2"), calib=data,
                                  eval=data, sparsity=0.5, out_dir=tmp_path / "out",
                                  max_drop=None, batch_size=16))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    sections = {t["target"]: t for t in report["targets"]}
    for name, section in sections.items():
        layers = {row["name"]: row for row in section["layers"]}
        assert set(layers) == {"q_conv", "k_conv", "v_conv", "proj", "head"}, name
        assert 0.3 < np.mean([row["sparsity"] for row in layers.values()]) < 0.7
        assert layers["q_conv"]["neuron"] == "q_lif"
        assert section["accuracy"]["dense_float"] == 1.0
        assert section["accuracy"]["compressed_float"] > 0.4
    generic, loihi = sections["generic"]["chip_host_split"], sections["loihi2"]["chip_host_split"]
    assert generic["all_on_chip"] and not generic["transfers"]
    host = {h["node"]: h for h in loihi["host"]}
    assert {"kv", "kv_sum", "qkv_out", "q_heads", "back", "merge"} <= set(host)
    assert "product of two activations" in host["kv"]["reason"]
    assert {"q_lif", "k_lif", "v_lif", "attn_lif", "head_lif"} <= set(loihi["chip"])
    assert any(t["direction"] == "host->chip" and not t["spikes"] for t in loihi["transfers"])
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown.count("### Chip / host split") == 1     # loihi2 only
    warnings = [v for v in sections["loihi2"]["violations"] if v["layer"] == "kv"]
    assert warnings and all(v["severity"] == "warning" for v in warnings)
    assert result.results[1].check.split.placement("kv") == "host"
