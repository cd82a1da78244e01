"""Unlabelled image collections: a folder of images at any depth (``folder:`` without the labelled
layout, ``images:``) and a file list (``files:``), in memory and streamed, in pretraining and as
training data beside a labelled ``--eval-data``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from stream_helpers import jpeg_folder, plain_augment, stream_plan

from simxir.data import LoaderConfig, open_dataset
from simxir.data.index import folder_index, is_labelled_layout
from simxir.data.stream import TrainViews, make_loader
from simxir.errors import UserError
from simxir.train.source import RankBatches

MODES = ("RGB", "L", "RGBA", "P", "CMYK")
EXTS = (".jpg", ".JPEG", ".png", ".webp", ".jpeg")


def photo_folder(root: Path, n: int, seed: int = 0, side: int = 20) -> list[str]:
    """``n`` noisy photos of different sizes, modes and extensions at depths 0-3, a hidden file, a
    hidden folder and a text file (neither is an image); returns the images' relative paths."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rel = []
    for i in range(n):
        sub = ["a", "a/b", "a/b/c", ""][i % 4]
        ext, mode = EXTS[i % len(EXTS)], MODES[i % len(MODES)]
        if ext == ".png" and mode == "CMYK":
            mode = "RGB"   # PNG has no CMYK
        if ext in (".jpg", ".JPEG", ".jpeg") and mode in ("RGBA", "P"):
            mode = "RGB"   # nor JPEG RGBA/P
        w, h = side + (i % 3) * 4, side + (i % 2) * 6
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = root / sub / f"p{i:03d}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).convert(mode).save(path, quality=95)
        rel.append(str(path.relative_to(root)))
    (root / ".hidden.jpg").write_bytes(b"not read")
    (root / ".cache").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / ".cache" / "x.png")
    (root / "a" / "notes.txt").write_text("not an image")
    return sorted(rel)


def test_folder_rule_decides_labelled_or_not_and_can_be_forced(tmp_path):
    labelled = jpeg_folder(tmp_path / "lab", 4, 2, w=24, h=20)
    photos = tmp_path / "photos"
    photo_folder(photos, 6)
    assert is_labelled_layout(labelled) and not is_labelled_layout(photos)
    a = open_dataset(f"folder:{labelled}")
    assert a.labelled and a.classes == ["c0", "c1"] and len(a.test) == 2
    b = open_dataset(f"folder:{photos}")
    assert not b.labelled and b.num_classes == 0 and len(b.train) == 6 and len(b.test) == 0
    assert bool((b.train.labels == -1).all())
    # images: reads a labelled layout as plain images (train and val alike); imagefolder: insists on labels
    c = open_dataset(f"images:{labelled}")
    assert not c.labelled and len(c.train) == 6
    with pytest.raises(UserError, match=r"expected folders train/<class>/ and val/<class>/"):
        open_dataset(f"imagefolder:{photos}")
    # a train/ folder with no val/ is not the labelled layout: every image, unlabelled
    (tmp_path / "half" / "train" / "x").mkdir(parents=True)
    photo_folder(tmp_path / "half" / "train" / "x", 3)
    assert not open_dataset(f"folder:{tmp_path / 'half'}").labelled


def test_nested_folder_and_file_list_give_every_image_as_rgb_in_memory_and_streamed(tmp_path):
    from PIL import Image

    root = tmp_path / "photos"
    rel = photo_folder(root, 10)
    index = folder_index(root, labels="off")
    assert sorted(f.decode() for f in index.train.files) == rel       # hidden files, text skipped
    # the list: relative to its own folder, an absolute path, comments and blank lines
    lst = tmp_path / "lists" / "mine.txt"
    lst.parent.mkdir()
    lines = [f"../photos/{r}" for r in rel[:-1]] + [str(root / rel[-1]), "", "# a comment"]
    lst.write_text("\n".join(lines) + "\n")
    mem_dir = open_dataset(f"images:{root}", 16)
    mem_list = open_dataset(f"files:{lst}", 16)
    assert mem_dir.train.images.shape == (10, 3, 16, 16) and mem_dir.train.images.dtype == torch.uint8
    # the same files in the same sorted order as the folder scan, decoded alike
    assert torch.equal(mem_dir.train.images, mem_list.train.images)
    # each image is the file decoded to RGB, centre-cropped to a square, resized (PIL bilinear)
    with Image.open(root / rel[0]) as im:
        im = im.convert("RGB")
        s = min(im.size)
        left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
        want = np.asarray(im.crop((left, top, left + s, top + s)).resize((16, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(mem_dir.train.images[0].permute(1, 2, 0).numpy(), want)
    streamed = open_dataset(f"files:{lst}", 16, LoaderConfig(stream="on", workers=0, stats_sample=4))
    assert streamed.streamed and not streamed.labelled and len(streamed.train) == 10 and len(streamed.test) == 0


def test_unlabelled_streamed_batches_are_the_same_with_zero_and_two_workers(tmp_path):
    root = tmp_path / "photos"
    photo_folder(root, 24, side=40)
    ds = open_dataset(f"folder:{root}", 16, LoaderConfig(stream="on", workers=0, stats_sample=4))
    plan = stream_plan(len(ds.train), 8)
    aug = plain_augment(16)
    batches = {}
    for workers in (0, 2):
        sampler = RankBatches(len(ds.train), plan)
        loader = make_loader(TrainViews(ds.train, 16, aug.specs, 0, False), batch_sampler=sampler, workers=workers)
        got = []
        for epoch in (0, 1):
            sampler.epoch = epoch
            got += [(torch.stack(x), y.clone()) for x, y, _ in loader]
        batches[workers] = got
    assert len(batches[0]) == 2 * 3
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2]):
        assert torch.equal(x0, x2) and torch.equal(y0, y2) and bool((y0 == -1).all())


def _kill_after_one(epoch, metrics):
    if epoch == 1:
        raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["off", "on"])
def test_unlabelled_pretraining_resumes_bit_for_bit_and_evaluates_on_eval_data(tmp_path, stream):
    from simxir.errors import TrainingInterrupted
    from simxir.protocol.monitor import knn_monitor
    from simxir.train.assemble import build_config
    from simxir.train.pretrain import run_pretrain

    root = tmp_path / "photos"
    photo_folder(root, 32, side=24)
    labelled = jpeg_folder(tmp_path / "lab", 8, 6, w=24, h=20)
    over = ["image_size=16", f"loader.stream={stream}", "loader.workers=1", "loader.stats_sample=4",
            "batch_size=8", "epochs=3", "backbone=convnet-small", "monitor.eval_size=4", "tensorboard=false",
            "log_every=1", "precision=fp32", "channels_last=false"]
    cfg = build_config("simsiam", None, over, f"folder:{root}")
    full = run_pretrain(cfg, tmp_path / "full", evaluator=knn_monitor)
    assert not any(k.startswith(("probe_", "knn_")) for k in full["epochs"][-1])   # no labels: no probe, no kNN
    with pytest.raises(TrainingInterrupted):
        run_pretrain(cfg, tmp_path / "cut", callbacks=(_kill_after_one,))
    resumed = run_pretrain(cfg, tmp_path / "cut", resume=True)
    assert [s["loss"] for s in resumed["steps"]] == [s["loss"] for s in full["steps"]]
    assert len(full["steps"]) == 12
    # the same run with --eval-data: identical training, a kNN monitor on the labelled set after the last epoch
    with_eval = build_config("simsiam", None, [*over, "monitor.knn_k=3"], f"folder:{root}", f"folder:{labelled}")
    ev = run_pretrain(with_eval, tmp_path / "ev", evaluator=knn_monitor)
    assert [s["loss"] for s in ev["steps"]] == [s["loss"] for s in full["steps"]]
    assert "knn_top1" in ev["epochs"][-1] and "knn_top1" not in ev["epochs"][0]
    assert 0.0 <= ev["epochs"][-1]["knn_top1"] <= 1.0


def test_a_small_collection_gets_a_batch_that_fits(tmp_path):
    from simxir.train.config import TrainConfig
    from simxir.train.plan import fitting_batch, resolve_length

    cfg = resolve_length(TrainConfig(batch_size=256), 40)
    assert cfg.batch_size == 32 and cfg.epochs == 150        # >= 150 steps of the one batch that fits
    assert fitting_batch(512, 1000, 8) == 512 and fitting_batch(512, 100, 8) == 64
    with pytest.raises(UserError, match="no smaller batch"):
        fitting_batch(256, 3, 2)


def test_bad_collections_get_one_line_naming_the_file(tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "noimg" / "deep"
    no_images.mkdir(parents=True)
    (no_images / "readme.txt").write_text("x")
    photos = tmp_path / "photos"
    photo_folder(photos, 4)
    missing = tmp_path / "list.txt"
    missing.write_text("photos/a/p000.jpg\nphotos/gone.jpg\n")
    not_image = tmp_path / "list2.txt"
    not_image.write_text("photos/a/notes.txt\n")
    enc = tmp_path / "enc.safetensors"
    from simxir.models import build_backbone, save_encoder

    save_encoder(build_backbone("convnet-small"), enc)
    cases = [
        (["pretrain", "--method", "simsiam", "--data", f"folder:{empty}", "--out", str(tmp_path / "r1")],
         f"{empty}: no images"),
        (["pretrain", "--method", "simsiam", "--data", f"folder:{tmp_path / 'noimg'}", "--out", str(tmp_path / "r2")],
         "noimg: no images"),
        (["pretrain", "--method", "simsiam", "--data", f"files:{missing}", "--out", str(tmp_path / "r3")],
         f"{missing}:2: photos/gone.jpg does not exist"),
        (["finetune", "--encoder", str(enc), "--data", f"files:{not_image}", "--out", str(tmp_path / "r4")],
         f"{not_image}:1: photos/a/notes.txt is not an image file"),
        (["finetune", "--encoder", str(enc), "--data", f"folder:{photos}", "--eval-data", f"images:{photos}",
          "--out", str(tmp_path / "r5")], f"--eval-data images:{photos}: has no labels"),
        (["eval", "--encoder", str(enc), "--data", "digits", "--eval-data", f"folder:{photos}"],
         f"--eval-data folder:{photos}: has no labels"),
        (["pretrain", "--method", "simsiam", "--data", f"folder:{tmp_path / 'nope'}", "--out", str(tmp_path / "r6")],
         "nope: no such folder"),
    ]
    for argv, message in cases:
        r = cli([*argv, "--json"])
        assert r.code == 2, (argv, r.err_lines)
        errors = [line for line in r.err_lines if line.startswith("error: ")]
        assert len(errors) == 1 and message in r.error and r.err_lines[-1] == r.error, (argv, r.err_lines)
        assert r.json["exit_code"] == 2
    for run in ("r1", "r2", "r3", "r4", "r5", "r6"):   # refused before anything was written
        assert not (tmp_path / run / "config.yaml").exists()


@pytest.mark.slow
def test_ablation_trains_on_unlabelled_photos_and_scores_on_eval_data(tmp_path):
    from simxir.experiments.ablation import run_ablation, select_rows

    root = tmp_path / "photos"
    photo_folder(root, 16, side=20)
    labelled = jpeg_folder(tmp_path / "lab", 8, 6, w=24, h=20)
    over = ["epochs=1", "image_size=16", "batch_size=8", "tensorboard=false", "precision=fp32",
            "monitor.eval_size=4"]
    rows = select_rows(["paper-std"])
    alone = run_ablation(rows, tmp_path / "a", overrides=over, data=f"folder:{root}", knn_k=3)
    assert alone["rows"][0]["knn_top1"] != alone["rows"][0]["knn_top1"]          # nan: no labels, no accuracy
    assert alone["rows"][0]["status"] in ("not collapsed (no labels)", "COLLAPSED")
    scored = run_ablation(rows, tmp_path / "b", overrides=over, data=f"folder:{root}", knn_k=3,
                          eval_data=f"folder:{labelled}")
    assert 0.0 <= scored["rows"][0]["knn_top1"] <= 100.0 and scored["eval_data"] == f"folder:{labelled}"
