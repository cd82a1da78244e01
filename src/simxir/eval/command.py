"""``simxir eval``: kNN (cos/euc, k = 5..21, weighted) and linear-probe accuracy of a frozen encoder.

Either ``--encoder CKPT --data SPEC`` (features are extracted with the augment recipe's
deterministic ``eval`` transform) or ``--features FEATS.npz`` (keys train_features, train_labels,
test_features, test_labels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer

from simxir.errors import UserError
from simxir.io import read_npz
from simxir.eval.evaluate import evaluate_features
from simxir.eval.features import extract_features
from simxir.eval.knn import DEFAULT_KS, faiss_available
from simxir.eval.linear import LinearProbeConfig
from simxir.eval.report import format_tables
from simxir.progress import log

FEATURE_KEYS = ("train_features", "train_labels", "test_features", "test_labels")


def parse_ks(text: str) -> list[int]:
    """"5,7,11" -> [5, 7, 11]; "" or "none" -> [] (kNN skipped)."""
    if text.strip().lower() in ("", "none", "off"):
        return []
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            k = int(part)
        except ValueError:
            raise UserError(f"--knn: expected comma-separated positive integers like 5,7,11, got {text!r}") from None
        if k < 1:
            raise UserError(f"--knn: expected positive integers, got {k}")
        out.append(k)
    return sorted(set(out))


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
    if arrs["train_features"].shape[0] == 0:
        raise UserError(f"--features {p}: train_features is empty")
    return (torch.from_numpy(np.ascontiguousarray(arrs["train_features"], dtype=np.float32)),
            torch.from_numpy(arrs["train_labels"].astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(arrs["test_features"], dtype=np.float32)),
            torch.from_numpy(arrs["test_labels"].astype(np.int64)))


def save_features_npz(path: str | Path, train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor,
                      test_y: torch.Tensor) -> None:
    """Write features in the format ``--features`` reads (atomically)."""
    import io as _io

    from simxir.io import atomic_write_bytes

    buf = _io.BytesIO()
    np.savez(buf, train_features=train_f.numpy(), train_labels=train_y.numpy(),
             test_features=test_f.numpy(), test_labels=test_y.numpy())
    atomic_write_bytes(path, buf.getvalue())


def default_eval_recipe(image_size: int) -> str:
    """Augment recipe whose ``eval`` transform suits the image size."""
    if image_size <= 16:
        return "tiny"
    if image_size <= 64:
        return "simsiam-cifar"
    return "byol-imagenet"


def _encoder_features(encoder: str, data: str, backbone: str | None, fmt: str | None, allow_pickle: bool,
                      augment: str | None, image_size: int | None, batch_size: int,
                      device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from simxir.augment import build_augment
    from simxir.data import load_dataset
    from simxir.models import load_encoder

    ds = load_dataset(data, image_size=image_size) if image_size else load_dataset(data)
    model, report = load_encoder(encoder, backbone=backbone, format=fmt, allow_pickle=allow_pickle)
    log(report.summary() if hasattr(report, "summary") else f"encoder {encoder}: {report}")
    recipe = augment or default_eval_recipe(ds.image_size)
    aug = build_augment(recipe, ds.image_size, ds.mean, ds.std)
    model = model.to(device)
    log(f"data {data}: {len(ds.train.labels)} train / {len(ds.test.labels)} test images, "
        f"{ds.image_size}px, eval transform of '{recipe}'")
    tr = extract_features(model, ds.train.images, aug, batch_size, device, desc="train features")
    te = extract_features(model, ds.test.images, aug, batch_size, device, desc="test features")
    return tr, ds.train.labels, te, ds.test.labels


def eval_command(
    encoder: str = typer.Option(None, "--encoder", help="encoder checkpoint (safetensors or torch)"),
    data: str = typer.Option(None, "--data", help="dataset spec for --encoder, e.g. digits, npz:FILE, cifar10:DIR"),
    features: str = typer.Option(None, "--features", help="precomputed features .npz (train_features, "
                                 "train_labels, test_features, test_labels) instead of --encoder/--data"),
    backbone: str = typer.Option(None, "--backbone", help="backbone name when the checkpoint does not say"),
    fmt: str = typer.Option(None, "--format", help="checkpoint format (see simxir.models.load_encoder)"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="trust and fully unpickle a torch checkpoint"),
    augment: str = typer.Option(None, "--augment", help="augment recipe whose eval transform is used "
                                "(default: tiny <=16px, simsiam-cifar <=64px, else byol-imagenet)"),
    image_size: int = typer.Option(None, "--image-size", help="resize dataset images to this size"),
    knn: str = typer.Option(",".join(map(str, DEFAULT_KS)), "--knn", help="comma-separated ks ('none' skips kNN)"),
    temperature: float = typer.Option(0.07, "--temperature", help="temperature of the weighted kNN vote"),
    linear: bool = typer.Option(True, "--linear/--no-linear", help="train a linear probe"),
    linear_epochs: int = typer.Option(100, "--linear-epochs", help="linear-probe epochs"),
    linear_lr: float = typer.Option(0.1, "--linear-lr", help="linear-probe base learning rate (cosine schedule)"),
    linear_wd: float = typer.Option(0.0, "--linear-wd", help="linear-probe weight decay"),
    linear_batch_size: int = typer.Option(256, "--linear-batch-size", help="linear-probe batch size"),
    standardize: bool = typer.Option(True, "--standardize/--no-standardize",
                                     help="z-score features with train statistics before the probe"),
    seed: int = typer.Option(0, "--seed", help="seed of the linear probe"),
    batch_size: int = typer.Option(256, "--batch-size", help="batch size of feature extraction"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)"),
    backend: str = typer.Option("torch", "--knn-backend", help="torch, or faiss (exact, CPU; needs pip install faiss-cpu)"),
    save_features: str = typer.Option(None, "--save-features", help="also write the extracted features here (.npz)"),
    markdown: bool = typer.Option(False, "--markdown", help="print markdown tables"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Evaluate a frozen encoder (or saved features) with kNN and a linear probe."""
    if (encoder is None) == (features is None):
        raise UserError("expected exactly one of --encoder CKPT (with --data SPEC) or --features FEATS.npz")
    if encoder is not None and data is None:
        raise UserError("--encoder: also needs --data SPEC (e.g. digits, npz:FILE, cifar10:DIR)")
    if batch_size < 1:
        raise UserError(f"--batch-size: expected a positive integer, got {batch_size}")
    if backend == "faiss" and not faiss_available():
        raise UserError("--knn-backend faiss: faiss is not installed (pip install faiss-cpu)")
    ks = parse_ks(knn)
    if not ks and not linear:
        raise UserError("--knn none with --no-linear: nothing to evaluate")
    if device is None:
        from simxir.device import default_device
        dev = default_device()
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise UserError(f"--device: expected cpu, cuda or cuda:N, got {device!r}") from None
    if features is not None:
        tr, ytr, te, yte = load_features_npz(features)
    else:
        tr, ytr, te, yte = _encoder_features(encoder, data, backbone, fmt, allow_pickle, augment, image_size,
                                             batch_size, dev)
    if save_features:
        save_features_npz(save_features, tr, ytr, te, yte)
        log(f"features written to {save_features}")
    cfg = LinearProbeConfig(epochs=linear_epochs, lr=linear_lr, weight_decay=linear_wd,
                            batch_size=linear_batch_size, standardize=standardize, seed=seed)
    result: dict[str, Any] = evaluate_features(tr, ytr, te, yte, knn_ks=ks, linear=linear, linear_cfg=cfg,
                                               weighted_temperature=temperature, backend=backend, device=dev)
    if json_out:
        print(json.dumps(result))
        return
    title = f"simxir eval: {features or encoder}" + (f" on {data}" if data else "")
    # the SimXIR paper's Table 1 layout: columns k, cells "cos / euc"
    print(format_tables(result, title=title, combined=True, markdown=markdown), end="")

