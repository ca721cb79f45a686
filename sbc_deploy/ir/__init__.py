"""The intermediate representation: frozen, validated, discrete-time, NIR-shaped."""

from sbc_deploy.ir.encoding import GRIDS, WeightEncoding, frozen_array, mantissa_range
from sbc_deploy.ir.graph import Graph, SynapseLayer
from sbc_deploy.ir.nodes import (
    IF,
    LI,
    LIF,
    NEURON_TYPES,
    NODE_TYPES,
    RESET_TIMINGS,
    RESETS,
    SPIKE_VARIANT_DEFAULTS,
    SYNAPSE_TYPES,
    Affine,
    AvgPool2d,
    Conv1d,
    Conv2d,
    CubaLI,
    CubaLIF,
    Delay,
    Flatten,
    Input,
    Integrator,
    Neuron,
    Node,
    Output,
    Scale,
    SumPool2d,
    Synapse,
    Threshold,
    conv_output_length,
    spike_variant_text,
)

__all__ = [
    "GRIDS", "IF", "LI", "LIF", "NEURON_TYPES", "NODE_TYPES", "RESET_TIMINGS", "RESETS",
    "SPIKE_VARIANT_DEFAULTS", "SYNAPSE_TYPES", "Affine",
    "AvgPool2d", "Conv1d", "Conv2d", "CubaLI", "CubaLIF", "Delay", "Flatten", "Graph", "Input",
    "Integrator", "Neuron", "Node", "Output", "Scale", "SumPool2d", "Synapse", "SynapseLayer",
    "Threshold", "WeightEncoding", "conv_output_length", "frozen_array", "mantissa_range",
    "spike_variant_text",
]
