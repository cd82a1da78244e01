"""ImageFolder layout with real PNG/JPEG files written by Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simxir.data import load_dataset
from simxir.errors import UserError


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_png_exact_and_class_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = {}
    for split in ("train", "val"):
        for cls in ("zebra", "ant", "moth"):  # written out of order: labels follow sorted names
            for i in range(2):
                a = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
                _save(tmp_path / split / cls / f"{i}.png", a)
                imgs[(split, cls, i)] = a
    (tmp_path / "train" / "ant" / "notes.txt").write_text("ignored")
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.classes == ["ant", "moth", "zebra"] and ds.image_size == 12
    assert ds.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    # files sorted by name within a class: image 3 is moth/1.png
    assert np.array_equal(ds.train.images[3].permute(1, 2, 0).numpy(), imgs[("train", "moth", 1)])
    assert np.array_equal(ds.test.images[4].permute(1, 2, 0).numpy(), imgs[("val", "zebra", 0)])


def test_jpeg_grayscale_test_alias_and_size_rule(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        for i in range(3):  # most common shorter side in train: 10
            _save(tmp_path / "train" / cls / f"{i}.JPG", rng.integers(0, 256, (10, 10, 3), dtype=np.uint8))
        _save(tmp_path / "test" / cls / "0.png", rng.integers(0, 256, (10, 10, 3), dtype=np.uint8))
    wide = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)  # H=20, W=30: shorter side 20
    _save(tmp_path / "train" / "b" / "wide.png", wide)
    gray = rng.integers(0, 256, size=(10, 10), dtype=np.uint8)
    _save(tmp_path / "test" / "a" / "gray.png", gray)
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.image_size == 10 and len(ds.train) == 7 and len(ds.test) == 3
    # JPEG pixels equal Pillow's own RGB decode
    ref = np.asarray(Image.open(tmp_path / "train" / "a" / "1.JPG").convert("RGB"))
    assert np.array_equal(ds.train.images[1].permute(1, 2, 0).numpy(), ref)
    # non-square: center crop of the shorter side (columns 5..24), then bilinear resize to 10x10
    expect = np.asarray(Image.fromarray(wide[:, 5:25]).resize((10, 10), Image.Resampling.BILINEAR))
    idx = 6  # class b: 0.JPG, 1.JPG, 2.JPG, wide.png
    assert np.array_equal(ds.train.images[idx].permute(1, 2, 0).numpy(), expect)
    # grayscale replicated to RGB
    g = ds.test.images[1]  # class a: 0.png, gray.png
    for c in range(3):
        assert np.array_equal(g[c].numpy(), gray)
    # explicit image_size resizes everything
    assert load_dataset(f"folder:{tmp_path}", image_size=6).train.images.shape == (7, 3, 6, 6)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="train/<class>"):   # imagefolder: insists on the labelled layout
        load_dataset(f"imagefolder:{tmp_path}")
    with pytest.raises(UserError, match="no images"):       # folder: reads a folder without it as unlabelled
        load_dataset(f"folder:{tmp_path}")
    a = np.zeros((4, 4, 3), np.uint8)
    _save(tmp_path / "train" / "x" / "0.png", a)
    _save(tmp_path / "train" / "y" / "0.png", a)
    _save(tmp_path / "val" / "x" / "0.png", a)
    _save(tmp_path / "val" / "z" / "0.png", a)
    with pytest.raises(UserError, match=r"extra: \['z'\], missing: \['y'\]"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "val" / "z" / "0.png").rename(tmp_path / "val" / "z" / "0.txt")
    (tmp_path / "val" / "z").rename(tmp_path / "val" / "y")
    with pytest.raises(UserError, match="val/y: no images"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "val" / "y" / "0.png").write_bytes(b"broken")
    with pytest.raises(UserError, match="0.png: not a readable image"):
        load_dataset(f"folder:{tmp_path}")


def test_imagenet_size_folders_are_stored_for_the_eval_centre_crop(tmp_path: Path) -> None:
    """A crop above 64 px is stored at round(S / 0.875) (the evaluation's Resize(R) -> CenterCrop(S)),
    and the eval transform then takes the central S x S of the stored square, with no resampling."""
    import torch

    from simxir.augment import build_augment
    from simxir.data.crops import eval_view

    rng = np.random.default_rng(4)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            coarse = Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8))
            _save(tmp_path / split / cls / "0.jpg", np.asarray(coarse.resize((150, 120), Image.Resampling.BICUBIC)))
    ds = load_dataset(f"folder:{tmp_path}", image_size=80)
    assert (ds.image_size, ds.stored_size) == (80, 91) and tuple(ds.train.images.shape[2:]) == (91, 91)
    # stored: the centre square of the shorter side (columns 15..134), resized to 91 by Pillow
    src = np.asarray(Image.open(tmp_path / "train" / "a" / "0.jpg").convert("RGB"))
    expect = np.asarray(Image.fromarray(src[:, 15:135]).resize((91, 91), Image.Resampling.BILINEAR))
    assert np.array_equal(ds.train.images[0].permute(1, 2, 0).numpy(), expect)
    aug = build_augment("byol-imagenet", ds.image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    out = aug.eval(ds.train.images[:1])
    top = (91 - 80) // 2
    assert torch.allclose(out, ds.train.images[:1, :, top:top + 80, top:top + 80].float() / 255, atol=1e-6)
    # and it agrees with the streamed path's Resize(91) -> CenterCrop(80) of the same (smooth) image;
    # a whole-image eval (the old transform: Resize(80) of the square) is far from it
    streamed = eval_view(tmp_path / "train" / "a" / "0.jpg", 80).float() / 255
    assert (out[0] - streamed).abs().mean() < 0.02          # sub-pixel offsets of the two crops
    whole = torch.nn.functional.interpolate(ds.train.images[:1].float() / 255, size=(80, 80), mode="bilinear",
                                            antialias=True)
    assert (whole[0] - streamed).abs().mean() > 3 * (out[0] - streamed).abs().mean()
    # images that arrive eval-cropped (S x S) pass through; small crops keep the whole image
    assert torch.allclose(aug.eval(out.mul(255).round().to(torch.uint8)), out, atol=1e-6)
    small = load_dataset(f"folder:{tmp_path}", image_size=48)
    assert (small.image_size, small.stored_size, small.crop_size) == (48, 48, 0)
