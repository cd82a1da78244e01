"""Frozen-encoder feature extraction (uint8 images in, float32 CPU features out) and the features
file ``simxir eval --save-features`` writes and ``--features`` reads."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Subset

from simxir import distributed
from simxir.augment import auto_recipe, build_augment
from simxir.data import LoaderConfig, open_dataset, open_eval_dataset
from simxir.data.stream import EvalImages, count_unreadable, free_host_bytes, loader_workers, make_loader
from simxir.device import bf16_supported
from simxir.errors import UserError
from simxir.io import atomic_write_bytes, read_npz
from simxir.models import load_encoder
from simxir.progress import log, progress

Transform = Callable[[torch.Tensor], torch.Tensor]


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """Default transform: uint8 0..255 -> float 0..1 (no normalisation)."""
    return x.float().div_(255.0)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); cpu for a parameterless model."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def resolve_transform(augment_or_transform: object | None) -> Transform:
    """Accept an ``Augment`` (its ``.eval`` is used), a callable, or None (scale to 0..1)."""
    if augment_or_transform is None:
        return _to_float
    ev = getattr(augment_or_transform, "eval", None)
    if callable(ev) and not isinstance(augment_or_transform, nn.Module):
        return ev
    if callable(augment_or_transform):
        return augment_or_transform  # type: ignore[return-value]
    raise TypeError(f"expected an Augment or a callable transform, got {type(augment_or_transform)!r}")


def extract_features(
    model: nn.Module,
    images_uint8: torch.Tensor,
    transform: object | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    desc: str = "features",
    rows_held: int | None = None,
) -> torch.Tensor:
    """Run ``model`` in eval mode over ``images_uint8`` (N, 3, H, W) in batches; return (N, d) on CPU
    (float32, or float16 when float32 would not fit: :func:`feature_dtype` of ``rows_held``, default N).

    ``transform`` is an ``Augment`` (its deterministic ``.eval`` is used), any callable mapping a
    uint8 batch on ``device`` to the model's input, or None (divide by 255). ``device`` defaults to
    the model's device. The model's train/eval mode is restored afterwards.
    """
    if not isinstance(images_uint8, torch.Tensor) or images_uint8.ndim != 4:
        shape = tuple(images_uint8.shape) if isinstance(images_uint8, torch.Tensor) else type(images_uint8)
        raise UserError(f"images: expected a uint8 tensor of shape (N, 3, H, W), got {shape}")
    if batch_size < 1:
        raise UserError(f"--batch-size: expected a positive integer, got {batch_size}")
    n = images_uint8.shape[0]
    starts = range(0, n, batch_size)
    return _frozen_features(model, (images_uint8[s:s + batch_size] for s in starts), transform, device, desc,
                            len(starts), n, rows_held)


def feature_dtype(n: int, dim: int) -> torch.dtype:
    """float32, or float16 when N x d float32 features would take more than a quarter of the free
    host memory (1.28M x 2048 ImageNet features: 10.5 GB as float32, 5.2 GB as float16)."""
    return torch.float16 if n * dim * 4 > 0.25 * free_host_bytes() else torch.float32


def feature_autocast(dev: torch.device) -> Any:
    """bf16 autocast where the device has it natively (CUDA from Ampere on), else a no-op: on the CPU
    features stay float32 (bf16 there is not reliably faster: simxir.train.precision)."""
    on = dev.type == "cuda" and bf16_supported(dev)
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=True) if on else nullcontext()


@contextmanager
def channels_last(model: nn.Module, on: bool) -> Iterator[bool]:
    """Run ``model``'s convolutions in channels_last inside the block (the faster layout on CUDA
    tensor cores) and give each 4-d parameter its memory format back afterwards; yields whether the
    inputs should be channels_last too (only when the model has convolutions)."""
    four_d = [p for p in model.parameters() if p.dim() == 4]
    if not (on and four_d):
        yield False
        return
    was_cl = [p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in four_d]
    model.to(memory_format=torch.channels_last)
    try:
        yield True
    finally:
        for p, cl in zip(four_d, was_cl, strict=True):
            if not cl:
                p.data = p.data.contiguous()


def _frozen_features(model: nn.Module, batches: Iterable[torch.Tensor], transform: object | None,
                     device: torch.device | str | None, desc: str, total: int, n: int,
                     rows_held: int | None = None) -> torch.Tensor:
    """``model`` in eval mode (restored afterwards) over uint8 ``batches`` of ``n`` images in all:
    (n, d) on CPU, stored as :func:`feature_dtype` of ``rows_held`` (default ``n``: the rows the host
    will hold in the end, the whole split when shards are gathered); host batches are pinned and
    copied non-blocking on CUDA."""
    tf = resolve_transform(transform)
    dev = torch.device(device) if device is not None else model_device(model)
    cuda = dev.type == "cuda"
    was_training = model.training
    model.eval()
    out: torch.Tensor | None = None
    pos = 0
    try:
        # the layout changes outside inference mode: the parameters stay ordinary (trainable) tensors
        with channels_last(model, cuda) as cl, torch.inference_mode(), feature_autocast(dev):
            for xb in progress(batches, desc=desc, total=total):
                if cuda and xb.device.type == "cpu" and not xb.is_pinned():   # a GPU batch: as it is
                    xb = xb.pin_memory()
                xb = tf(xb.to(dev, non_blocking=True))
                fb = model(xb.contiguous(memory_format=torch.channels_last) if cl else xb).flatten(1)
                if out is None:
                    out = torch.empty(n, fb.shape[1], dtype=feature_dtype(rows_held or n, fb.shape[1]),
                                      pin_memory=cuda)
                out[pos:pos + fb.shape[0]].copy_(fb, non_blocking=cuda)
                pos += fb.shape[0]
        if cuda:
            torch.cuda.synchronize(dev)
    finally:
        model.train(was_training)
    if out is None:
        return torch.zeros(0, 0, dtype=torch.float32)
    return out[:pos]


def shard(n: int) -> tuple[int, int]:
    """This process's contiguous block ``[lo, hi)`` of ``n`` items (everything when alone)."""
    r, w = distributed.rank(), distributed.world_size()
    return n * r // w, n * (r + 1) // w


def gather_rows(part: torch.Tensor, n: int, device: torch.device, main_only: bool = False) -> torch.Tensor:
    """The blocks of :func:`shard` from every process, concatenated in rank order (n rows, on CPU,
    on every process; ``main_only``: on rank 0 only, the others get 0 rows, so one host holds
    N x d instead of every process); sent through ``device`` (NCCL needs CUDA tensors)."""
    w = distributed.world_size()
    if w == 1:
        return part
    sizes = [n * (r + 1) // w - n * r // w for r in range(w)]
    # the width, and float16 storage if any process chose it (each chose from its own free memory)
    agree = torch.tensor([part.shape[1] if part.numel() else 0, int(part.dtype == torch.float16)], device=device)
    dist.all_reduce(agree, op=dist.ReduceOp.MAX)
    dim, half = agree.tolist()
    buf = torch.zeros(max(sizes), dim, dtype=torch.float16 if half else part.dtype, device=device)
    buf[:part.shape[0]] = part.to(device)
    if main_only:
        main = distributed.is_main()
        got = [torch.empty_like(buf) for _ in range(w)] if main else None
        dist.gather(buf, got, dst=0)
        if not main:
            return buf.new_zeros(0, dim).cpu()
    else:
        got = [torch.empty_like(buf) for _ in range(w)]
        dist.all_gather(got, buf)
    return torch.cat([g[:k] for g, k in zip(got, sizes, strict=True)]).cpu()


def split_features(model: nn.Module, dataset: Any, split: str, transform: object | None = None,
                   batch_size: int = 256, device: torch.device | str | None = None,
                   main_only: bool = False) -> torch.Tensor:
    """Features of ``dataset.<split>``: in-memory images, or a streamed folder's files decoded by
    DataLoader workers with the evaluation crop (Resize -> CenterCrop). Under torchrun each process
    extracts its block of the split and every process gets all rows, in order (``main_only``: rank 0
    alone gets them, the others 0 rows)."""
    if batch_size < 1:
        raise UserError(f"--batch-size: expected a positive integer, got {batch_size}")
    part = getattr(dataset, split)
    dev = torch.device(device) if device is not None else model_device(model)
    n = len(part.labels)
    lo, hi = shard(n)
    if not getattr(dataset, "streamed", False):
        mine = extract_features(model, part.images[lo:hi], transform, batch_size, dev, desc=f"{split} features",
                                rows_held=n)
        return gather_rows(mine, n, dev, main_only)
    cfg = dataset.loader
    images_ds = Subset(EvalImages(part, dataset.image_size, cfg.skip_unreadable), range(lo, hi))
    loader = make_loader(images_ds, batch_size=batch_size, workers=loader_workers(cfg), prefetch=cfg.prefetch,
                         pin=dev.type == "cuda", persistent=False)
    skipped = [0]

    def images() -> Iterator[torch.Tensor]:
        for x, _, bad in loader:
            skipped[0] += count_unreadable(bad, cfg.skip_unreadable, x)
            yield x

    mine = _frozen_features(model, images(), transform, dev, f"{split} features", len(loader), hi - lo, rows_held=n)
    if skipped[0]:
        log(f"{split} features: {skipped[0]} unreadable files skipped (replaced by the next readable file)")
    return gather_rows(mine, n, dev, main_only)


def dataset_features(model: nn.Module, dataset: Any, transform: object | None = None, batch_size: int = 256,
                     device: torch.device | str | None = None, main_only: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train features, train labels, test features, test labels) of an in-memory or streamed dataset
    (``main_only``: the features on rank 0 only, see :func:`split_features`)."""
    tr = split_features(model, dataset, "train", transform, batch_size, device, main_only)
    te = split_features(model, dataset, "test", transform, batch_size, device, main_only)
    return tr, dataset.train.labels, te, dataset.test.labels


FEATURE_KEYS = ("train_features", "train_labels", "test_features", "test_labels")
MAX_CLASSES = 1_000_000   # a label beyond this is a mistake, not a class (one-hot and probe weights would not fit)


def load_features_npz(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read and check a features file: 2-D float features with equal dims, 1-D integer labels."""
    p = Path(path)
    arrs = read_npz(p, FEATURE_KEYS, option="--features")
    for split in ("train", "test"):
        f, y = arrs[f"{split}_features"], arrs[f"{split}_labels"]
        if f.ndim != 2 or f.dtype.kind not in "fiu":
            raise UserError(f"--features {p}: {split}_features must be a 2-D numeric array (N, d), "
                            f"got shape {f.shape} dtype {f.dtype}")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise UserError(f"--features {p}: {split}_labels must be a 1-D integer array, got shape {y.shape} "
                            f"dtype {y.dtype}")
        if y.shape[0] != f.shape[0]:
            raise UserError(f"--features {p}: {split}_labels has {y.shape[0]} entries but {split}_features "
                            f"has {f.shape[0]} rows")
        if y.size and y.min() < 0:
            raise UserError(f"--features {p}: {split}_labels must be class indices >= 0")
        if not np.isfinite(f).all():
            raise UserError(f"--features {p}: {split}_features contains NaN or inf")
    if arrs["train_features"].shape[1] != arrs["test_features"].shape[1]:
        raise UserError(f"--features {p}: train_features dim {arrs['train_features'].shape[1]} != "
                        f"test_features dim {arrs['test_features'].shape[1]}")
    for split in ("train", "test"):
        f, y = arrs[f"{split}_features"], arrs[f"{split}_labels"]
        if f.shape[0] == 0 or f.shape[1] == 0:
            raise UserError(f"--features {p}: {split}_features is empty (shape {f.shape})")
        if int(y.max()) >= MAX_CLASSES:
            raise UserError(f"--features {p}: {split}_labels holds class {int(y.max())}; expected class indices "
                            f"below {MAX_CLASSES}")
        with np.errstate(over="ignore"):
            overflow = not np.isfinite(f.astype(np.float32)).all()
        if overflow:
            raise UserError(f"--features {p}: {split}_features overflow float32 (values beyond 3.4e38)")
    return (torch.from_numpy(np.ascontiguousarray(arrs["train_features"], dtype=np.float32)),
            torch.from_numpy(arrs["train_labels"].astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(arrs["test_features"], dtype=np.float32)),
            torch.from_numpy(arrs["test_labels"].astype(np.int64)))


def save_features_npz(path: str | Path, train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor,
                      test_y: torch.Tensor) -> None:
    """Write features in the format ``--features`` reads (atomically)."""
    buf = io.BytesIO()
    np.savez(buf, train_features=train_f.numpy(), train_labels=train_y.numpy(),
             test_features=test_f.numpy(), test_labels=test_y.numpy())
    atomic_write_bytes(path, buf.getvalue())


def open_encoder_data(encoder: str, data: str, backbone: str | None, fmt: str | None, allow_pickle: bool,
                      augment: str | None, image_size: int | None, device: torch.device,
                      loader: LoaderConfig | None = None, eval_data: str | None = None,
                      normalization: str = "auto") -> tuple[nn.Module, Any, Any, Any]:
    """(model on ``device``, the data, the evaluation data (``eval_data``, labelled, else the data),
    the augmentation whose eval transform is used: ``augment``'s recipe, default ``auto``'s for the
    image size, normalised with the data's mean/std)."""
    model, report = load_encoder(encoder, backbone=backbone, format=fmt, allow_pickle=allow_pickle)
    log(report.summary())
    pre = report.preprocess if normalization == "auto" else None
    size = image_size or (pre or {}).get("size") or 0      # the preprocessor's crop size unless --image-size
    ds = open_dataset(data, size, loader, device=device)
    evaluation = open_eval_dataset(eval_data, ds.image_size, loader, device=device) if eval_data else ds
    recipe = augment or auto_recipe(ds.image_size)
    aug = build_augment(recipe, ds.image_size, pre["mean"] if pre else ds.mean, pre["std"] if pre else ds.std)
    log(f"data {data}: {len(ds.train.labels)} train / {len(ds.test.labels)} test images, "
        f"{ds.image_size}px, eval transform of '{recipe}', normalised with "
        + (f"the encoder's own preprocessing ({pre['source']})" if pre else "the data's mean/std"))
    return model.to(device), ds, evaluation, aug


def encoder_features(encoder: str, data: str, backbone: str | None, fmt: str | None, allow_pickle: bool,
                      augment: str | None, image_size: int | None, batch_size: int,
                     device: torch.device, loader: LoaderConfig | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train features, train labels, test features, test labels) of an encoder file over a dataset
    spec, through the eval transform of ``augment`` (default: ``auto``'s recipe for the image size)."""
    model, ds, _, aug = open_encoder_data(encoder, data, backbone, fmt, allow_pickle, augment, image_size, device,
                                          loader)
    return dataset_features(model, ds, aug, batch_size, device)
