"""Simulators: the float simulator (torch, batched, multi-step) and output decoding."""

from sbc_deploy.sim.decode import accuracy, classify, default_decoding
from sbc_deploy.sim.float_sim import SimResult, simulate

__all__ = ["SimResult", "accuracy", "classify", "default_decoding", "simulate"]
