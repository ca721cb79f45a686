"""Small networks built from the graph-operation nodes (issue 18), shaped as spikingjelly's zoo
builds them: a Conv-BN-LIF-MaxPool CSNN, a SEW block (ADD / AND / IAND), Spikformer's spiking
self-attention block and the spike-driven Transformer's SDSA block. Weights are drawn so that
several percent of the neurons fire per step on random input spikes."""

from __future__ import annotations

import numpy as np

from sbc_deploy.ir import (
    LIF,
    AdaptiveAvgPool2d,
    Affine,
    ChannelAffine,
    Conv1d,
    Conv2d,
    Flatten,
    Graph,
    Identity,
    Input,
    MatMul,
    MaxPool2d,
    Output,
    Permute,
    Product,
    Reduce,
    Reshape,
    Slice,
)

DT = 1e-3


def lif(shape, beta=0.5, threshold=1.0, reset="zero") -> LIF:
    return LIF(np.full(shape, beta), np.full(shape, threshold), reset=reset)


def bn(rng: np.random.Generator, shape) -> ChannelAffine:
    c = shape[0]
    return ChannelAffine(rng.uniform(0.8, 1.2, c), rng.normal(0.1, 0.05, c), shape)


def conv(rng, c_in, c_out, hw, k=3, gain=1.0, bias=False) -> Conv2d:
    fan_in = c_in * k * k
    weight = rng.normal(0.0, gain * 2.0 / np.sqrt(fan_in), (c_out, c_in, k, k))
    return Conv2d(weight, (c_in, *hw), padding=k // 2,
                  bias=rng.normal(0, 0.1, c_out) if bias else None)


def csnn_maxpool(rng: np.random.Generator, channels=(2, 8, 8), hw=16, classes=10) -> Graph:
    """Conv-BN-LIF-MaxPool x2, AdaptiveAvgPool, Flatten, Linear-LIF (spikingjelly's CSNN)."""
    c0, c1, c2 = channels
    h2, h4 = hw // 2, hw // 4
    nodes = {
        "in": Input((c0, hw, hw)),
        "conv1": conv(rng, c0, c1, (hw, hw), gain=2.0), "bn1": bn(rng, (c1, hw, hw)),
        "lif1": lif((c1, hw, hw)), "pool1": MaxPool2d(2, (c1, hw, hw)),
        "conv2": conv(rng, c1, c2, (h2, h2), gain=2.0), "bn2": bn(rng, (c2, h2, h2)),
        "lif2": lif((c2, h2, h2)), "pool2": MaxPool2d(3, (c2, h2, h2), stride=2, padding=1),
        "gap": AdaptiveAvgPool2d((3, 3), (c2, h4, h4)),
        "flat": Flatten((c2, 3, 3)),
        "fc": Affine(rng.normal(0, 3.0 / np.sqrt(c2 * 9), (classes, c2 * 9))),
        "lif3": lif((classes,)),
        "out": Output((classes,)),
    }
    return Graph.chain(nodes.items(), DT)


def sew_block(rng: np.random.Generator, connect: str, c=6, hw=8) -> Graph:
    """conv-BN-LIF, conv-BN-LIF, then SEW ``connect(identity, out)`` with the stem's spikes as
    identity (spikingjelly's BasicBlock order: ADD a + b, AND a * b, IAND a * (1 - b))."""
    shape = (c, hw, hw)
    nodes = {
        "in": Input((2, hw, hw)),
        "stem": conv(rng, 2, c, (hw, hw), gain=2.0), "stem_lif": lif(shape),
        "conv1": conv(rng, c, c, (hw, hw), gain=2.0), "bn1": bn(rng, shape), "lif1": lif(shape),
        "conv2": conv(rng, c, c, (hw, hw), gain=2.0), "bn2": bn(rng, shape), "lif2": lif(shape),
    }
    edges = [("in", "stem"), ("stem", "stem_lif"), ("stem_lif", "conv1"), ("conv1", "bn1"),
             ("bn1", "lif1"), ("lif1", "conv2"), ("conv2", "bn2"), ("bn2", "lif2")]
    ports = {}
    if connect == "ADD":
        nodes["sew"] = Identity(shape)
        edges += [("stem_lif", "sew"), ("lif2", "sew")]
    else:
        nodes["sew"] = Product(shape, shape)
        edges += [("stem_lif", "sew")]
        ports[("stem_lif", "sew")] = "a"
        if connect == "IAND":
            nodes["not_out"] = ChannelAffine(-np.ones(c), np.ones(c), shape)
            edges += [("lif2", "not_out"), ("not_out", "sew")]
            ports[("not_out", "sew")] = "b"
        else:
            edges += [("lif2", "sew")]
            ports[("lif2", "sew")] = "b"
    nodes["gap"] = AdaptiveAvgPool2d(1, shape)
    nodes["flat"] = Flatten((c, 1, 1))
    nodes["fc"] = Affine(rng.normal(0, 1.0, (4, c)), bias=np.zeros(4))
    nodes["out"] = Output((4,))
    edges += [("sew", "gap"), ("gap", "flat"), ("flat", "fc"), ("fc", "out")]
    return Graph(nodes, edges, DT, ports=ports)


def ssa_block(rng: np.random.Generator, c=24, tokens=16, heads=2, classes=5) -> Graph:
    """Spikformer: x + SSA(x), then + MLP, token mean, Linear head. SSA: a 1x1 Conv1d + BN to
    3C channels, LIF, reshape to (3, heads, d, L), Q/K/V slices, ``(V K^T) Q * 0.125``, LIF
    (threshold 0.5), reshape to (C, L), projection Conv1d + BN, LIF."""
    d = c // heads
    qkv_shape, head = (3 * c, tokens), (1, heads, d, tokens)
    nodes = {
        "in": Input((c, tokens)),
        "x": Identity((c, tokens)),
        "qkv": Conv1d(rng.normal(0, 2.5 / np.sqrt(c), (3 * c, c, 1)), (c, tokens)),
        "qkv_bn": bn(rng, qkv_shape), "qkv_lif": lif(qkv_shape),
        "split": Reshape(qkv_shape, (3, heads, d, tokens)),
        "q": Slice((3, heads, d, tokens), 0, 0, 1), "k": Slice((3, heads, d, tokens), 0, 1, 2),
        "v": Slice((3, heads, d, tokens), 0, 2, 3),
        "k_t": Permute(head, (0, 1, 3, 2)),
        "vk": MatMul(head, (1, heads, tokens, d)),
        "vkq": MatMul((1, heads, d, d), head, scale=0.125),
        "attn_lif": lif(head, threshold=0.5),
        "merge": Reshape(head, (c, tokens)),
        "proj": Conv1d(rng.normal(0, 2.5 / np.sqrt(c), (c, c, 1)), (c, tokens)),
        "proj_bn": bn(rng, (c, tokens)), "proj_lif": lif((c, tokens)),
        "res1": Identity((c, tokens)),
        "fc1": Conv1d(rng.normal(0, 2.5 / np.sqrt(c), (2 * c, c, 1)), (c, tokens)),
        "fc1_bn": bn(rng, (2 * c, tokens)), "fc1_lif": lif((2 * c, tokens)),
        "fc2": Conv1d(rng.normal(0, 2.5 / np.sqrt(2 * c), (c, 2 * c, 1)), (2 * c, tokens)),
        "fc2_bn": bn(rng, (c, tokens)), "fc2_lif": lif((c, tokens)),
        "res2": Identity((c, tokens)),
        "mean": Reduce((c, tokens), (1,), op="mean"),
        "head": Affine(rng.normal(0, 1.0, (classes, c)), bias=rng.normal(0, 0.1, classes)),
        "out": Output((classes,)),
    }
    edges = [("in", "x"), ("x", "qkv"), ("qkv", "qkv_bn"), ("qkv_bn", "qkv_lif"),
             ("qkv_lif", "split"), ("split", "q"), ("split", "k"), ("split", "v"),
             ("k", "k_t"), ("v", "vk"), ("k_t", "vk"), ("vk", "vkq"), ("q", "vkq"),
             ("vkq", "attn_lif"), ("attn_lif", "merge"), ("merge", "proj"),
             ("proj", "proj_bn"), ("proj_bn", "proj_lif"), ("proj_lif", "res1"), ("x", "res1"),
             ("res1", "fc1"), ("fc1", "fc1_bn"), ("fc1_bn", "fc1_lif"), ("fc1_lif", "fc2"),
             ("fc2", "fc2_bn"), ("fc2_bn", "fc2_lif"), ("fc2_lif", "res2"), ("res1", "res2"),
             ("res2", "mean"), ("mean", "head"), ("head", "out")]
    ports = {("v", "vk"): "a", ("k_t", "vk"): "b", ("vk", "vkq"): "a", ("q", "vkq"): "b"}
    return Graph(nodes, edges, DT, ports=ports)


def sdsa_block(rng: np.random.Generator, c=8, hw=4, heads=2, classes=5) -> Graph:
    """The spike-driven Transformer's block: shortcut LIF, Q/K/V 1x1 Conv2d + BN + LIF, heads
    split to (heads, HW, d), ``kv = LIF(sum_tokens(k * v))``, ``q * kv``, heads merged, projection
    Conv2d + BN added to the block's input; then a global average pool, LIF and Linear head."""
    d, n = c // heads, hw * hw
    shape = (c, hw, hw)
    split = (heads, n, d)

    def heads_of(prefix: str) -> dict:
        return {f"{prefix}_flat": Reshape(shape, (c, n)),
                f"{prefix}_tok": Permute((c, n), (1, 0)),
                f"{prefix}_hd": Reshape((n, c), (n, heads, d)),
                f"{prefix}_heads": Permute((n, heads, d), (1, 0, 2))}

    nodes = {"in": Input(shape), "x": Identity(shape), "short_lif": lif(shape)}
    edges = [("in", "x"), ("x", "short_lif")]
    for p in "qkv":
        nodes[f"{p}_conv"] = conv(rng, c, c, (hw, hw), k=1, gain=2.5)
        nodes[f"{p}_bn"] = bn(rng, shape)
        nodes[f"{p}_lif"] = lif(shape)
        nodes.update(heads_of(p))
        edges += [("short_lif", f"{p}_conv"), (f"{p}_conv", f"{p}_bn"), (f"{p}_bn", f"{p}_lif"),
                  (f"{p}_lif", f"{p}_flat"), (f"{p}_flat", f"{p}_tok"), (f"{p}_tok", f"{p}_hd"),
                  (f"{p}_hd", f"{p}_heads")]
    nodes.update({
        "kv": Product(split, split),
        "kv_sum": Reduce(split, (1,), keepdims=True),
        "attn_lif": lif((heads, 1, d), threshold=0.5),
        "qkv_out": Product(split, (heads, 1, d)),
        "back": Permute(split, (0, 2, 1)),
        "merge": Reshape((heads, d, n), shape),
        "proj": conv(rng, c, c, (hw, hw), k=1, gain=2.5, bias=True),
        "proj_bn": bn(rng, shape),
        "res": Identity(shape),
        "gap": Reduce(shape, (1, 2), op="mean"),
        "head_lif": lif((c,), threshold=0.5),
        "head": Affine(rng.normal(0, 1.0, (classes, c)), bias=rng.normal(0, 0.1, classes)),
        "out": Output((classes,)),
    })
    edges += [("k_heads", "kv"), ("v_heads", "kv"), ("kv", "kv_sum"), ("kv_sum", "attn_lif"),
              ("q_heads", "qkv_out"), ("attn_lif", "qkv_out"), ("qkv_out", "back"),
              ("back", "merge"), ("merge", "proj"), ("proj", "proj_bn"), ("proj_bn", "res"),
              ("x", "res"), ("res", "gap"), ("gap", "head_lif"), ("head_lif", "head"),
              ("head", "out")]
    ports = {("k_heads", "kv"): "a", ("v_heads", "kv"): "b", ("q_heads", "qkv_out"): "a",
             ("attn_lif", "qkv_out"): "b"}
    return Graph(nodes, edges, DT, ports=ports)


def spikes(rng: np.random.Generator, steps: int, batch: int, shape, rate=0.3) -> np.ndarray:
    return (rng.random((steps, batch, *shape)) < rate).astype(np.float32)
