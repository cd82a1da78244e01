"""``simxir eval``: kNN (cos/euc, k = 5..21, weighted) and linear-probe accuracy of a frozen encoder.

Either ``--encoder CKPT --data SPEC`` (features are extracted with the augment recipe's
deterministic ``eval`` transform) or ``--features FEATS.npz`` (keys train_features, train_labels,
test_features, test_labels).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from simxir.data import LoaderConfig
from simxir.device import parse_device
from simxir.errors import UserError
from simxir.eval.features import dataset_features, load_features_npz, open_encoder_data, save_features_npz
from simxir.eval.knn import DEFAULT_KS, faiss_available, parse_ks
from simxir.eval.labelfree import LabelFreeConfig, evaluate_label_free
from simxir.eval.linear import LinearProbeConfig
from simxir.eval.paired import paired_cells
from simxir.eval.report import format_label_free, format_paired, format_tables
from simxir.io import json_safe
from simxir.progress import log
from simxir.protocol import EvalProtocol, evaluate, protocol_config, score_features


def eval_command(
    encoder: str = typer.Option(None, "--encoder", help="encoder checkpoint (safetensors or torch)"),
    data: str = typer.Option(None, "--data", help="dataset spec for --encoder, e.g. digits, npz:FILE, cifar10:DIR, "
                             "folder:DIR (unlabelled: label-free numbers only, unless --eval-data)"),
    eval_data: str = typer.Option(None, "--eval-data", help="labelled dataset spec for kNN/linear (default: "
                                  "--data; its images normalised with --data's mean/std)"),
    label_free: bool = typer.Option(None, "--label-free/--no-label-free", help="RankMe, alignment, uniformity "
                                    "and cluster geometry on --data's train images (default: on for unlabelled "
                                    "--data)"),
    label_free_images: int = typer.Option(1000, "--label-free-images", help="train images of the label-free numbers"),
    features: str = typer.Option(None, "--features", help="precomputed features .npz (train_features, "
                                 "train_labels, test_features, test_labels) instead of --encoder/--data"),
    backbone: str = typer.Option(None, "--backbone", help="backbone name when the checkpoint does not say"),
    fmt: str = typer.Option(None, "--format", help="checkpoint format (see simxir.models.load_encoder)"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="trust and fully unpickle a torch checkpoint"),
    augment: str = typer.Option(None, "--augment", help="augment recipe whose eval transform is used "
                                "(default: tiny <=16px, simsiam-cifar <=64px, else byol-imagenet)"),
    image_size: int = typer.Option(None, "--image-size", help="resize dataset images to this size "
                                   "(streamed folders: the centre crop, default 224)"),
    stream: str = typer.Option("auto", "--stream", help="folder data: on (decode per batch from the files), "
                               "off (decode all into memory), auto (stream when it would not fit)"),
    workers: int = typer.Option(None, "--workers", help="loader worker processes for streamed folders "
                                "(default: from the CPU count)"),
    classes: str = typer.Option(None, "--classes", help="folder data: a class-list file selecting classes"),
    skip_unreadable: bool = typer.Option(False, "--skip-unreadable", help="skip (and count) files that do "
                                         "not decode instead of stopping"),
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
    backend: str = typer.Option("torch", "--knn-backend",
                                help="torch, or faiss (exact, CPU; needs pip install faiss-cpu)"),
    save_features: str = typer.Option(None, "--save-features", help="also write the extracted features here (.npz)"),
    linear_protocol: str = typer.Option("fast", "--linear-protocol",
                                        help="fast: a probe on precomputed un-augmented features; augmented: "
                                             "the papers' protocol (frozen backbone, BN + linear layer trained "
                                             "on RandomResizedCrop + flip views; needs --encoder)"),
    linear_recipe: str = typer.Option(None, "--linear-recipe",
                                      help="augmented protocol: a recipes/linear/*.yaml file (default: SGD lr 0.3, "
                                           "wd 1e-6, batch 256, 100 epochs, cosine)"),
    linear_out: str = typer.Option(None, "--linear-out", help="augmented protocol: folder for its epoch "
                                                              "checkpoint (rerun with --resume to continue)"),
    resume: bool = typer.Option(False, "--resume", help="continue the augmented protocol from --linear-out"),
    normalization: str = typer.Option("auto", "--normalization", help="auto: the encoder's own preprocessing "
                                      "(a transformers folder's preprocessor_config.json) when it has one, else "
                                      "the data's mean/std; data: always the data's"),
    compare: tuple[str, str] | None = typer.Option(None, "--compare", metavar="BEFORE AFTER",
                                            help="pair two evaluations on the same test images: each a "
                                                 "`simxir eval --json` output (.json) or an encoder "
                                                 "checkpoint evaluated here on --data; prints the paired "
                                                 "change of every cell with its 95% interval and McNemar's p"),
    markdown: bool = typer.Option(False, "--markdown", help="print markdown tables"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Evaluate a frozen encoder (or saved features) with kNN and a linear probe."""
    pair = list(compare or ())
    if pair and (encoder is not None or features is not None):
        raise UserError("--compare BEFORE AFTER: replaces --encoder and --features (each side is an eval JSON "
                        "or an encoder checkpoint)")
    if pair and save_features:
        raise UserError("--compare: cannot be combined with --save-features")
    if pair:
        encoder = next((c for c in pair if not _is_result(c)), None)   # the options are checked with it
        if encoder is None:
            return _compare([_read_result(c) for c in pair], pair, json_out, markdown)
    if (encoder is None) == (features is None):
        raise UserError("expected exactly one of --encoder CKPT (with --data SPEC) or --features FEATS.npz")
    if encoder is not None and data is None:
        raise UserError("--encoder: also needs --data SPEC (e.g. digits, npz:FILE, cifar10:DIR)")
    if batch_size < 1:
        raise UserError(f"--batch-size: expected a positive integer, got {batch_size}")
    if backend == "faiss" and not faiss_available():
        raise UserError("--knn-backend faiss: faiss is not installed (pip install faiss-cpu)")
    finite = "a finite number > 0"
    for name, value, ok, expected in (
            ("--linear-lr", linear_lr, math.isfinite(linear_lr) and linear_lr > 0, finite),
            ("--linear-wd", linear_wd, math.isfinite(linear_wd) and linear_wd >= 0, "a finite number >= 0"),
            ("--temperature", temperature, math.isfinite(temperature) and temperature > 0, finite),
            ("--linear-epochs", linear_epochs, linear_epochs >= 1, "a positive integer"),
            ("--linear-batch-size", linear_batch_size, linear_batch_size >= 1, "a positive integer")):
        if not ok:
            raise UserError(f"{name}: expected {expected}, got {value}")
    ks = parse_ks(knn)
    if not ks and not linear:
        raise UserError("--knn none with --no-linear: nothing to evaluate")
    dev = parse_device(device or "auto", "--device")
    if label_free_images < 2:
        raise UserError(f"--label-free-images: expected at least 2, got {label_free_images}")
    protocol = EvalProtocol(knn_ks=tuple(ks), weighted_temperature=temperature, knn_backend=backend, linear=linear,
                            linear_cfg=LinearProbeConfig(epochs=linear_epochs, lr=linear_lr, weight_decay=linear_wd,
                                                         batch_size=linear_batch_size, standardize=standardize,
                                                         seed=seed),
                            batch_size=batch_size, linear_protocol=linear_protocol, linear_recipe=linear_recipe,
                            label_free=LabelFreeConfig(images=label_free_images), normalization=normalization)
    augmented = protocol.augmented
    if augmented and features is not None:
        raise UserError("--linear-protocol augmented: needs --encoder and --data (it trains on new crops of "
                        "the images), not --features")
    if features is not None and (eval_data or label_free):
        raise UserError("--eval-data and --label-free: need --encoder and --data, not --features")
    if augmented:
        protocol_config(linear_recipe)   # a bad recipe fails before any data is read
    extra: dict[str, Any] = {}
    if features is not None:
        result = score_features(*load_features_npz(features), protocol, device=dev)
    else:
        if stream not in ("auto", "on", "off"):
            raise UserError(f"--stream: expected auto, on or off, got {stream!r}")
        loader = LoaderConfig(stream=stream, workers=workers, classes=classes or "",  # type: ignore[arg-type]
                              skip_unreadable=skip_unreadable)
        model, ds, evaluation, aug = open_encoder_data(encoder, data, backbone, fmt, allow_pickle, augment,
                                                       image_size, dev, loader, eval_data, normalization)
        if pair:
            opened = (model, evaluation, aug)
            sides = [_read_result(c) if _is_result(c) else
                     _evaluate_side(c, opened if c == encoder else None, data, backbone, fmt, allow_pickle, augment,
                                    image_size, dev, loader, eval_data, protocol)
                     for c in pair]
            return _compare(sides, pair, json_out, markdown)
        if label_free or (label_free is None and not ds.labelled):
            summary, _, _ = evaluate_label_free(model, ds, aug, protocol.label_free, batch_size=batch_size)
            extra["label_free"] = summary
        if not evaluation.labelled:
            if save_features or augmented:
                raise UserError(f"--data {data}: unlabelled; --save-features and the augmented protocol need "
                                f"labels (pass --eval-data SPEC)")
            _print(extra, json_out, markdown, f"simxir eval: {encoder} on {data} (unlabelled: label-free numbers)")
            return
        feats = dataset_features(model, evaluation, aug, batch_size, dev)
        if save_features:
            save_features_npz(save_features, *feats)
            log(f"features written to {save_features}")
        result = evaluate(model, evaluation, aug, protocol, linear_out, resume=resume, features=feats)
    result.update(extra)
    title = f"simxir eval: {features or encoder}" + (f" on {eval_data or data}" if data else "")
    _print(result, json_out, markdown, title)


def _print(result: dict[str, Any], json_out: bool, markdown: bool, title: str) -> None:
    if json_out:
        print(json.dumps(json_safe(result)))
        return
    # the SimXIR paper's Table 1 layout: columns k, cells "cos / euc"
    text = format_tables(result, title=title, combined=True, markdown=markdown) if (
        result.get("knn") or result.get("linear")) else (f"## {title}\n" if markdown else f"{title}\n")
    print(text, end="")
    if result.get("label_free"):
        print("\n" + format_label_free(result["label_free"], markdown), end="")



def _is_result(path: str) -> bool:
    return path.endswith(".json")


def _read_result(path: str) -> dict[str, Any]:
    """A saved ``simxir eval --json`` result (also ``finetune``'s before.json / after.json)."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"--compare {path}: cannot read it as JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(result, dict) or not result.get("right"):
        raise UserError(f"--compare {path}: expected a `simxir eval --json` result with per-image outcomes "
                        f"(`right`); it has none (an older simxir wrote it, or the augmented protocol with "
                        f"report=best); evaluate the encoder again")
    return result


def _evaluate_side(path: str, opened: tuple[Any, Any, Any] | None, data: str, backbone: str | None,
                   fmt: str | None, allow_pickle: bool, augment: str | None, image_size: int | None, dev: Any,
                   loader: LoaderConfig, eval_data: str | None, protocol: EvalProtocol) -> dict[str, Any]:
    """One encoder of ``--compare`` under the same protocol (``opened``: its model, data and augment)."""
    if opened is None:
        model, _, evaluation, aug = open_encoder_data(path, data, backbone, fmt, allow_pickle, augment, image_size,
                                                      dev, loader, eval_data, protocol.normalization)
    else:
        model, evaluation, aug = opened
    if not evaluation.labelled:
        raise UserError(f"--compare: --data {data} is unlabelled; pairing needs labels (pass --eval-data SPEC)")
    log(f"evaluating {path}")
    return evaluate(model, evaluation, aug, protocol)


def _compare(sides: list[dict[str, Any]], names: list[str], json_out: bool, markdown: bool) -> None:
    cells = paired_cells(sides[0], sides[1], what=f"--compare {names[0]} {names[1]}")
    if not cells:
        raise UserError(f"--compare: {names[0]} and {names[1]} share no evaluated cell (kNN k / linear)")
    if json_out:
        print(json.dumps(json_safe({"before": sides[0], "after": sides[1], "paired": cells,
                                    "sources": {"before": names[0], "after": names[1]}})))
        return
    title = f"simxir eval --compare: {names[0]} -> {names[1]}"
    print(("## " if markdown else "") + title + "\n")
    print(format_paired(cells, markdown), end="")
