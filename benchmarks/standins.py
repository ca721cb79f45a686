"""Random-weight stand-ins for the SBC paper's architectures, built as IR graphs with the API.

No file is downloaded: every network is built here from its layer list with seeded random
weights (He-scaled so that spikes neither die out nor saturate over a few layers) and fed
Bernoulli input spikes. They have the paper networks' shapes and parameter counts, not their
trained weights: they measure cost and memory, never accuracy.

- ``dvs128_csnn``: the DVS128-Gesture CSNN: 5 x (3x3 conv 128 ch, LIF, 2x2 sum pool) on
  2 x 128 x 128, then 2048-256-11 (1.12 M parameters);
- ``cifar10dvs_csnn``: a CIFAR10-DVS 4-conv CSNN at 128 x 128 (64-128-128-128 channels, three
  pools) whose read-out has a fan-in of 128 x 16 x 16 = 32,768: a dense n_in x n_in Hessian
  of that layer is 8 GiB in float64;
- ``vgg11``: spiking VGG-11 (64, P, 128, P, 256, 256, P, 512, 512, P, 512, 512, P) on
  2 x 64 x 64, classifier 2048-4096-4096-10 (34.4 M parameters). Max pooling is an average
  pool here (the IR has sum and average pools only);
- ``sew_resnet18``: SEW-ResNet-18 (stem 7x7/2 conv, 3x3/2 pool, 4 stages of 2 basic blocks,
  64-128-256-512 channels, 1x1/2 downsample convs, global average pool, 512-1000): each
  block's output is SEW's ADD junction, a ``Scale(1)`` node that two spiking edges feed
  (the IR adds edges into a node); 11.7 M parameters. At 64 x 64 and 224 x 224 (3 channels);
- ``spikformer_mlp``: the MLP half of a spiking transformer block (tokens x 384 -> 1536 ->
  384, LIF, residual ADD) as 1x1 Conv1d over 64 tokens, after a 1x1 embedding, no read-out. The attention half cannot be carried
  by the IR: it has no node that multiplies two activations (Q K^T, then that times V), no
  softmax and no layer norm; only synapses with fixed weights.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from sbc_deploy.ir import (
    LIF,
    Affine,
    AvgPool2d,
    Conv1d,
    Conv2d,
    Flatten,
    Graph,
    Input,
    Node,
    Output,
    Scale,
    SumPool2d,
)

BETA, THRESHOLD = 0.9, 1.0


class _Builder:
    """Collects nodes and edges; ``add`` links a new node to the given sources."""

    def __init__(self, rng: np.random.Generator, input_shape: tuple[int, ...]) -> None:
        self.rng = rng
        self.nodes: dict[str, Node] = {"input": Input(input_shape)}
        self.edges: list[tuple[str, str]] = []
        self.shape: dict[str, tuple[int, ...]] = {"input": tuple(input_shape)}

    def add(self, name: str, node: Node, *sources: str) -> str:
        self.nodes[name] = node
        self.edges.extend((src, name) for src in sources)
        self.shape[name] = tuple(node.output_shape)
        return name

    def lif(self, name: str, source: str) -> str:
        shape = self.shape[source]
        return self.add(name, LIF(beta=np.broadcast_to(BETA, shape),
                                  v_threshold=np.broadcast_to(THRESHOLD, shape)), source)

    def conv(self, name: str, source: str, out_ch: int, k: int, stride: int = 1,
             pad: int | None = None, gain: float = 3.0) -> str:
        c_in = self.shape[source][0]
        w = self.rng.normal(0, gain / np.sqrt(c_in * k * k), (out_ch, c_in, k, k))
        node = Conv2d(w.astype(np.float32), input_shape=self.shape[source],
                      stride=(stride, stride), padding=((k // 2, k // 2) if pad is None
                                                        else (pad, pad)))
        return self.add(name, node, source)

    def dense(self, name: str, source: str, n_out: int, gain: float = 3.0) -> str:
        n_in = self.shape[source][0]
        w = self.rng.normal(0, gain / np.sqrt(n_in), (n_out, n_in))
        return self.add(name, Affine(w.astype(np.float32)), source)

    def flatten(self, name: str, source: str) -> str:
        return self.add(name, Flatten(self.shape[source]), source)

    def graph(self, last: str) -> Graph:
        self.add("output", Output(self.shape[last]), last)
        return Graph(self.nodes, self.edges, dt=1e-3)


def dvs128_csnn(rng: np.random.Generator) -> Graph:
    b = _Builder(rng, (2, 128, 128))
    x = "input"
    for k in range(5):
        x = b.lif(f"lif{k}", b.conv(f"conv{k}", x, 128, 3))
        x = b.add(f"pool{k}", SumPool2d(2, input_shape=b.shape[x]), x)
    x = b.flatten("flat", x)
    x = b.lif("lif5", b.dense("fc1", x, 256))
    x = b.lif("lif6", b.dense("fc2", x, 11))
    return b.graph(x)


def cifar10dvs_csnn(rng: np.random.Generator) -> Graph:
    b = _Builder(rng, (2, 128, 128))
    x = "input"
    for k, ch in enumerate((64, 128, 128, 128)):
        x = b.lif(f"lif{k}", b.conv(f"conv{k}", x, ch, 3))
        if k < 3:
            x = b.add(f"pool{k}", SumPool2d(2, input_shape=b.shape[x]), x)
    x = b.flatten("flat", x)
    x = b.lif("lif4", b.dense("fc", x, 10))
    return b.graph(x)


def vgg11(rng: np.random.Generator) -> Graph:
    b = _Builder(rng, (2, 64, 64))
    x = "input"
    k = 0
    for item in (64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"):
        if item == "P":
            x = b.add(f"pool{k}", AvgPool2d(2, input_shape=b.shape[x]), x)
        else:
            x = b.lif(f"lif{k}", b.conv(f"conv{k}", x, int(item), 3))
        k += 1
    x = b.flatten("flat", x)
    x = b.lif("lif_fc1", b.dense("fc1", x, 4096))
    x = b.lif("lif_fc2", b.dense("fc2", x, 4096))
    x = b.lif("lif_fc3", b.dense("fc3", x, 10))
    return b.graph(x)


def _sew_resnet18(rng: np.random.Generator, size: int) -> Graph:
    b = _Builder(rng, (3, size, size))
    x = b.lif("stem.lif", b.conv("stem.conv", "input", 64, 7, stride=2))
    x = b.add("stem.pool", AvgPool2d(3, stride=2, padding=1, input_shape=b.shape[x]), x)
    for stage, ch in enumerate((64, 128, 256, 512)):
        for block in range(2):
            name = f"s{stage}b{block}"
            stride = 2 if stage > 0 and block == 0 else 1
            h = b.lif(f"{name}.lif1", b.conv(f"{name}.conv1", x, ch, 3, stride=stride))
            h = b.lif(f"{name}.lif2", b.conv(f"{name}.conv2", h, ch, 3))
            skip = x
            if stride != 1 or b.shape[x][0] != ch:
                skip = b.lif(f"{name}.down.lif", b.conv(f"{name}.down", x, ch, 1, stride=stride,
                                                        pad=0))
            # SEW ADD: out = SN(conv2(...)) + skip, a junction that both edges feed
            x = b.add(f"{name}.add", Scale(np.broadcast_to(np.float32(1.0), b.shape[h])), h,
                      skip)
    c, hh, ww = b.shape[x]
    x = b.add("gap", AvgPool2d((hh, ww), input_shape=b.shape[x]), x)
    x = b.flatten("flat", x)
    x = b.lif("fc.lif", b.dense("fc", x, 1000))
    return b.graph(x)


def sew_resnet18_64(rng: np.random.Generator) -> Graph:
    return _sew_resnet18(rng, 64)


def sew_resnet18_224(rng: np.random.Generator) -> Graph:
    return _sew_resnet18(rng, 224)


def spikformer_mlp(rng: np.random.Generator) -> Graph:
    tokens, dim, hidden = 64, 384, 1536
    b = _Builder(rng, (dim, tokens))

    def conv1x1(name: str, source: str, out_ch: int) -> str:
        c_in = b.shape[source][0]
        w = rng.normal(0, 3.0 / np.sqrt(c_in), (out_ch, c_in, 1)).astype(np.float32)
        return b.add(name, Conv1d(w, input_shape=b.shape[source]), source)

    x = b.lif("in.lif", conv1x1("embed", "input", dim))
    h = b.lif("mlp.lif1", conv1x1("mlp.fc1", x, hidden))
    h = b.lif("mlp.lif2", conv1x1("mlp.fc2", h, dim))
    x = b.add("mlp.add", Scale(np.broadcast_to(np.float32(1.0), b.shape[h])), h, x)
    return b.graph(x)   # the block's output tokens (a flattened read-out would have fan-in
    #                     64 x 384 = 24,576: a 4.5 GiB dense Hessian, the CIFAR10-DVS case)


NETWORKS: dict[str, tuple[str, Callable[[np.random.Generator], Graph]]] = {
    "dvs128_csnn": ("DVS128-Gesture CSNN (5 conv, 2x128x128)", dvs128_csnn),
    "cifar10dvs_csnn": ("CIFAR10-DVS CSNN (4 conv, 2x128x128, fan-in 32,768 read-out)",
                        cifar10dvs_csnn),
    "vgg11": ("spiking VGG-11 (2x64x64)", vgg11),
    "sew_resnet18_64": ("SEW-ResNet-18 (3x64x64)", sew_resnet18_64),
    "sew_resnet18_224": ("SEW-ResNet-18 (3x224x224)", sew_resnet18_224),
    "spikformer_mlp": ("spiking transformer block, MLP half (64 tokens x 384)",
                       spikformer_mlp),
}


def parameters(graph: Graph) -> int:
    """Weights and biases of every synapse."""
    total = 0
    for layer in graph.synapse_layers():
        syn = layer.synapse
        total += int(np.asarray(syn.weight).size)
        total += 0 if syn.bias is None else int(np.asarray(syn.bias).size)
    return total


def input_spikes(graph: Graph, samples: int, steps: int, seed: int = 1,
                 rate: float = 0.05) -> np.ndarray:
    """Bernoulli spikes ``[N, T, *input_shape]`` (float32), DVS-like sparsity."""
    shape = graph.nodes[graph.inputs[0]].output_shape
    rng = np.random.default_rng(seed)
    return (rng.random((samples, steps, *shape), dtype=np.float32) < rate).astype(np.float32)
