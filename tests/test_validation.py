"""Every number is validated where it enters (issue 30): config ranges, non-finite encoders and
features, empty splits, absurd labels, 16-bit images, ImageNet validation labels, and a resumed
linear probe that belongs to another encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simxir.errors import UserError
from simxir.models import build_backbone, save_encoder


@pytest.fixture
def fails(cli):
    """``fails(argv)``: run with --json; the exit code (the JSON object's too) and the error line."""
    def run(argv):
        r = cli([*argv, "--json"])
        assert r.json["exit_code"] == r.code
        return r.code, r.error

    return run


@pytest.mark.parametrize("override,message", [
    ("optim.lr=-1", "optim.lr: expected a finite number >= 0, got -1"),
    ("optim.lr=nan", "optim.lr: expected a finite number >= 0, got nan"),
    ("optim.betas=[2,3]", "optim.betas: expected two numbers in [0, 1)"),
    ("optim.momentum=-1", "optim.momentum: expected a number in [0, 1)"),
    ("optim.weight_decay=-1", "optim.weight_decay: expected a finite number >= 0"),
    ("batch_size=1", "BatchNorm needs at least 2"),
    ("log_every=0", "log_every: expected an integer >= 1"),
    ("monitor.eval_size=0", "monitor.eval_size: expected an integer >= 2"),
])
def test_config_numbers_are_refused_before_torch_sees_them(tmp_path, fails, override, message):
    code, err = fails(["pretrain", "--method", "simsiam", "--data", "digits", "--out", tmp_path / "r", "epochs=1",
                       override])
    assert code == 2 and message in err
    assert not (tmp_path / "r" / "config.yaml").exists()


def test_a_nan_encoder_is_refused_not_scored_at_chance(tmp_path, fails):
    enc = build_backbone("convnet-small")
    with torch.no_grad():
        for p in enc.parameters():
            p.fill_(float("nan"))
    save_encoder(enc, tmp_path / "nan.safetensors")
    code, err = fails(["eval", "--encoder", tmp_path / "nan.safetensors", "--data", "digits"])
    assert code == 2 and "hold NaN or inf" in err and "nan.safetensors" in err


def _features(path, tr, ytr, te, yte):
    np.savez(path, train_features=tr, train_labels=ytr, test_features=te, test_labels=yte)
    return str(path)


def test_features_that_cannot_be_scored_are_refused(tmp_path, fails):
    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(20, 4)), np.arange(20) % 2
    cases = [
        (_features(tmp_path / "big.npz", f * 1e300, y, f, y), "overflow float32"),
        (_features(tmp_path / "zero.npz", f[:, :0], y, f[:, :0], y), "train_features is empty"),
        (_features(tmp_path / "label.npz", f, y + 2**40, f, y), "expected class indices below"),
        (_features(tmp_path / "notest.npz", f, y, f[:0], y[:0]), "test_features is empty"),
    ]
    for path, message in cases:
        code, err = fails(["eval", "--features", path])
        assert code == 2 and message in err, (path, err)
    ok = _features(tmp_path / "ok.npz", f, y, f, y)
    for option, value, message in (("--temperature", "nan", "--temperature: expected a finite number > 0"),
                                   ("--linear-lr", "inf", "--linear-lr: expected a finite number > 0")):
        code, err = fails(["eval", "--features", ok, option, value])
        assert code == 2 and message in err


def test_evaluate_features_refuses_non_finite_and_empty_input():
    from simxir.eval import evaluate_features

    f, y = torch.randn(10, 3), torch.arange(10) % 2
    bad = f.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(UserError, match="1 of 10 rows hold NaN"):
        evaluate_features(bad, y, f, y, knn_ks=(3,), linear=False)
    with pytest.raises(UserError, match="empty split cannot be scored"):
        evaluate_features(f, y, f[:0], y[:0], knn_ks=(3,), linear=False)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from simxir.data import LoaderConfig, open_dataset

    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(ramp).save(d / "gray16.png")
    Image.fromarray(ramp[::-1].copy()).save(d / "gray16b.png")
    mem = open_dataset(f"images:{d}", 32)
    assert abs(mem.train.images.float().mean().item() / 255 - 0.5) < 0.01   # Pillow's convert("RGB"): 0.998
    streamed = open_dataset(f"images:{d}", 32, LoaderConfig(stream="on", workers=0, stats_sample=2))
    assert abs(streamed.mean[0] - 0.5) < 0.01


def test_arrange_val_checks_every_label_before_moving_anything(tmp_path):
    from PIL import Image

    from simxir.data.index import arrange_val, undo_arrange_val

    val = tmp_path / "val"
    val.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(val / f"ILSVRC2012_val_{i:08d}.JPEG")
    (tmp_path / "labels.txt").write_text("n01\nn02\nn0/3\n")
    with pytest.raises(UserError, match="is not a folder name; nothing was moved"):
        arrange_val(val, tmp_path / "labels.txt")
    flat = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(3)]
    assert sorted(p.name for p in val.iterdir()) == flat
    # a good arrangement, then its undo: the flat folder as it was
    (tmp_path / "labels.txt").write_text("n01\nn02\nn01\n")
    assert arrange_val(val, tmp_path / "labels.txt") == {"images": 3, "classes": 2}
    assert sorted(p.name for p in (val / "n01").iterdir()) == [flat[0], flat[2]]
    assert undo_arrange_val(val) == {"images": 3, "classes": 2}
    assert sorted(p.name for p in val.iterdir()) == flat


def test_a_resumed_probe_of_another_encoder_starts_over(tmp_path):
    from simxir.augment import build_augment
    from simxir.data import load_dataset, subset
    from simxir.protocol import protocol_config, protocol_probe

    ds = subset(load_dataset("digits"), 200, 60, seed=0)
    aug = build_augment("tiny", ds.image_size, ds.mean, ds.std)
    cfg = protocol_config(None, {"epochs": 2, "batch_size": 50})
    torch.manual_seed(0)
    a = build_backbone("convnet-small")
    torch.manual_seed(1)
    b = build_backbone("convnet-small")
    protocol_probe(a, ds, aug, cfg, tmp_path / "probe")                    # leaves A's finished probe
    fresh_b = protocol_probe(b, ds, aug, cfg, tmp_path / "fresh")
    resumed_b = protocol_probe(b, ds, aug, cfg, tmp_path / "probe", resume=True)
    assert resumed_b["top1"] == fresh_b["top1"] and resumed_b["top5"] == fresh_b["top5"]
    again_b = protocol_probe(b, ds, aug, cfg, tmp_path / "probe", resume=True)   # now B's own: continued
    assert again_b["top1"] == fresh_b["top1"]


def test_damaged_run_files_under_resume_are_one_line_or_rebuilt(tmp_path):
    from PIL import Image

    from simxir.data.index import folder_index

    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(d / f"{i}.png")
    cache = tmp_path / "data-index.npz"
    assert len(folder_index(d, cache=cache, labels="off").train) == 3
    cache.write_bytes(b"PK\x03\x04 damaged")                       # a half-written or edited cache
    assert len(folder_index(d, cache=cache, labels="off").train) == 3   # scanned again, written again
    assert len(folder_index(d, cache=cache, labels="off").train) == 3


def test_binary_recipes_and_zero_widths_are_one_line(tmp_path, fails):
    (tmp_path / "r.yaml").write_bytes(bytes(range(256)))
    code, err = fails(["pretrain", "--method", "simsiam", "--recipe", tmp_path / "r.yaml", "--out", tmp_path / "a"])
    assert code == 2 and "not valid YAML text" in err
    code, err = fails(["pretrain", "--method", "simsiam", "--out", tmp_path / "b", "method.proj_dim=-5"])
    assert code == 2 and "method.proj_dim: expected a positive width, got -5" in err


def test_an_unrecognised_checkpoint_layout_names_the_file(tmp_path, fails):
    torch.save({"state_dict": {"foo.weight": torch.zeros(2)}}, tmp_path / "weird.pt")
    code, err = fails(["inspect-encoder", tmp_path / "weird.pt"])
    assert code == 2 and err.startswith(f"error: {tmp_path / 'weird.pt'}: unrecognised checkpoint layout")


def test_skip_unreadable_also_applies_to_folders_decoded_into_memory(tmp_path):
    from PIL import Image

    from simxir.data import LoaderConfig, open_dataset

    d = tmp_path / "photos"
    d.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
    (d / "2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match="2.png: not a readable image"):
        open_dataset(f"images:{d}", 8, LoaderConfig(stream="off"))
    ds = open_dataset(f"images:{d}", 8, LoaderConfig(stream="off", skip_unreadable=True))
    assert len(ds.train) == 3
    assert sorted(int(v) for v in ds.train.images[:, 0, 0, 0]) == [0, 40, 120]   # the readable ones, in order


def test_a_symbolic_link_loop_in_a_folder_is_passed_over(tmp_path):
    from PIL import Image

    from simxir.data import open_dataset

    d = tmp_path / "photos" / "sub"
    d.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "a.png")
    (d / "loop").symlink_to(d / "loop")                  # a link to itself
    (d / "up").symlink_to(tmp_path / "photos")          # a link to an ancestor: not followed
    assert len(open_dataset(f"images:{tmp_path / 'photos'}", 8).train) == 1
