"""Datasets in memory: uint8 NCHW images, int64 labels, class names and train mean/std.

``load_dataset(spec)`` reads ``cifar10:DIR``, ``cifar100:DIR``, ``svhn:DIR``, ``folder:DIR`` (labelled
or not), ``imagefolder:DIR``, ``images:DIR``, ``files:LIST``, ``npz:FILE`` or ``digits``;
``split_validation`` and ``subset`` make stratified sub-datasets.
"""

from simxir.data.dataset import ImageDataset, Split, channel_stats, resize_images
from simxir.data.load import SCHEMES, load_dataset, open_dataset, open_eval_dataset, parse_spec
from simxir.data.splits import split_validation, stratified_indices, subset
from simxir.data.stream import LoaderConfig, StreamedDataset

__all__ = [
    "SCHEMES",
    "ImageDataset",
    "LoaderConfig",
    "StreamedDataset",
    "Split",
    "channel_stats",
    "load_dataset",
    "open_dataset",
    "open_eval_dataset",
    "parse_spec",
    "resize_images",
    "split_validation",
    "stratified_indices",
    "subset",
]
