"""Calibration and evaluation data: readers (npz, event datasets as tonic keeps them, images),
spike encoders and class-balanced calibration draws.

Every source becomes a frozen :class:`Dataset` (``x`` [N, T, *input_shape], ``y`` [N] or
``None``, ``dt``, ``source``) through :func:`load_data`.
"""

from sbc_deploy.data.dataset import Dataset
from sbc_deploy.data.encoders import DvsConfig, dvs_dataset, dvs_encode, rate_encode
from sbc_deploy.data.events import (
    EVENT_DTYPE,
    NMNIST_SENSOR,
    as_events,
    bin_events,
    bin_recordings,
    make_events,
)
from sbc_deploy.data.images import mnist_images, mnist_split, pad_to_nmnist
from sbc_deploy.data.load import load_data
from sbc_deploy.data.nmnist import (
    decode_nmnist,
    encode_nmnist,
    nmnist_files,
    read_nmnist_bin,
    read_nmnist_folder,
    write_nmnist_bin,
)
from sbc_deploy.data.npz import read_npz, write_npz
from sbc_deploy.data.sampling import balanced_draws, balanced_indices, balanced_subset
from sbc_deploy.data.static import direct_encode, load_images
from sbc_deploy.data.tonic_sets import load_event_spec, parse_spec

__all__ = [
    "EVENT_DTYPE", "NMNIST_SENSOR", "Dataset", "DvsConfig", "as_events", "balanced_draws",
    "balanced_indices", "balanced_subset", "bin_events", "bin_recordings", "decode_nmnist",
    "direct_encode", "dvs_dataset", "dvs_encode", "encode_nmnist", "load_data",
    "load_event_spec", "load_images", "make_events", "mnist_images", "mnist_split",
    "nmnist_files", "pad_to_nmnist", "parse_spec", "rate_encode", "read_nmnist_bin",
    "read_nmnist_folder", "read_npz", "write_nmnist_bin", "write_npz",
]
