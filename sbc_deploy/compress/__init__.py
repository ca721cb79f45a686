"""Compress: prune and quantise every synapse layer of a graph (SBC, OBC/GPTQ/SparseGPT, baselines).

Stage contract: ``Graph`` + :class:`~sbc_deploy.calibrate.Calibration` + a config ->
``(new Graph, CompressionStats)``. The input graph is never modified; the new graph's synapse
nodes carry the compressed weights and, when quantised, an exact
:class:`~sbc_deploy.ir.encoding.WeightEncoding` (integer mantissas and scales).

This module is the stage's face: it hands on the public names. The work is in
:mod:`~sbc_deploy.compress.passes` (the passes and :func:`compress`) and
:mod:`~sbc_deploy.compress.layer_solve` (one layer's problem, solve and quantisation), over the
solvers (:mod:`.obs`), Hessians (:mod:`.hessian`), grids, masks and allocations.

One table maps config type to pass (torchao style, ``passes.PASSES``)::

    SBCConfig        -> _obs_pass        (calibration with the "smp" kernel)
    OBCConfig        -> _obs_pass        (calibration with the "current" kernel)
    MagnitudeConfig  -> _magnitude_pass  (no Hessian; the calibration, if any, measures the loss)

Per layer: the allocation (:mod:`~sbc_deploy.compress.allocate`) fixes how many weights go;
the pruning solver (``config.solver``) picks them and reconstructs the rest; then the kept
weights are quantised by a GPTQ sweep with the mask fixed, in SBC's column order
(``act_order``). Propagation ``"sequential"`` re-calibrates each layer on the graph whose
earlier layers are already compressed.

Under :mod:`sbc_deploy.distributed` (torchrun) the independent solves are dealt out over the
processes and gathered: the global allocation's loss-curve points and, with parallel
propagation, the layers; a sequential re-calibration shares its batches like the first one.

Example::

    >>> calib = calibrate(graph, x, kernel="smp")
    >>> small, stats = compress(graph, calib, SBCConfig(sparsity=0.9, allocation="global", bits=8))
    >>> stats.layer_loss["fc1"], stats.layers[0].sparsity
"""

from sbc_deploy.compress.config import (
    Budget,
    CompressionConfig,
    MagnitudeConfig,
    OBCConfig,
    SBCConfig,
    config_for,
    config_for_target,
)
from sbc_deploy.compress.layer_solve import LayerStats
from sbc_deploy.compress.passes import PASSES, CompressionStats, compress

__all__ = [
    "PASSES", "Budget", "CompressionConfig", "CompressionStats", "LayerStats", "MagnitudeConfig",
    "OBCConfig", "SBCConfig", "compress", "config_for", "config_for_target",
]
