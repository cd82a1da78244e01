"""CIFAR-10/100 python batches written in the real format (byte keys, N x 3072 uint8 CHW rows)."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from simxir.data import load_dataset
from simxir.errors import UserError

N_PER_BATCH = 4


def _dump(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(root: Path, rng: np.random.Generator, n: int = N_PER_BATCH) -> dict[str, tuple]:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        _dump(d / name, {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]})
        written[name] = (data, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(d / "batches.meta", {b"num_cases_per_batch": n, b"label_names": names, b"num_vis": 3072})
    return written


def _check10(ds, written) -> None:
    train_x = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_y = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape == (5 * N_PER_BATCH, 3, 32, 32)
    # row-major CHW: pixel (c, h, w) of image i is data[i, c*1024 + h*32 + w]
    i, c, h, w = 7, 2, 5, 31
    assert int(ds.train.images[i, c, h, w]) == int(train_x[i, c * 1024 + h * 32 + w])
    assert np.array_equal(ds.train.images.reshape(len(train_x), -1).numpy(), train_x)
    assert ds.train.labels.tolist() == train_y
    assert np.array_equal(ds.test.images.reshape(N_PER_BATCH, -1).numpy(), written["test_batch"][0])
    assert ds.test.labels.tolist() == written["test_batch"][1]
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck" and ds.num_classes == 10
    assert ds.name == "cifar10" and ds.image_size == 32


def test_cifar10_folder_and_parent(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path, np.random.default_rng(0))
    _check10(load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}"), written)
    _check10(load_dataset(f"cifar10:{tmp_path}"), written)


def test_cifar10_tar_gz(tmp_path: Path) -> None:
    src = tmp_path / "src"
    written = write_cifar10(src, np.random.default_rng(1))
    archive = tmp_path / "dl" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    _check10(load_dataset(f"cifar10:{archive}"), written)
    _check10(load_dataset(f"cifar10:{archive.parent}"), written)  # the archive's parent folder


def test_python2_numpy_global_names_load(tmp_path: Path) -> None:
    """Real batches (Python 2 cPickle) name numpy.core.multiarray; numpy 2 writes numpy._core."""
    written = write_cifar10(tmp_path, np.random.default_rng(2))
    d = tmp_path / "cifar-10-batches-py"
    for f in d.iterdir():
        f.write_bytes(f.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"numpy.core.multiarray" in (d / "data_batch_1").read_bytes()
    _check10(load_dataset(f"cifar10:{d}"), written)


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    xs, ys = {}, {}
    for name, n in (("train", 6), ("test", 3)):
        xs[name] = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        ys[name] = [int(v) for v in rng.integers(0, 100, size=n)]
        _dump(d / name, {b"data": xs[name], b"fine_labels": ys[name],
                         b"coarse_labels": [v // 5 for v in ys[name]]})
    _dump(d / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                       b"coarse_label_names": [f"s{i}".encode() for i in range(20)]})
    ds = load_dataset(f"cifar100:{tmp_path}")
    assert ds.num_classes == 100 and ds.classes[42] == "c42" and ds.name == "cifar100"
    assert ds.train.labels.tolist() == ys["train"] and ds.test.labels.tolist() == ys["test"]
    assert np.array_equal(ds.train.images.reshape(6, -1).numpy(), xs["train"])


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.sentinel}",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path, np.random.default_rng(4))
    sentinel = tmp_path / "pwned"
    evil = _Evil()
    evil.sentinel = sentinel  # type: ignore[attr-defined]
    d = tmp_path / "cifar-10-batches-py"
    _dump(d / "data_batch_3", {b"data": evil, b"labels": []})
    with pytest.raises(UserError, match=r"data_batch_3: refused to unpickle .*system"):
        load_dataset(f"cifar10:{d}")
    assert not sentinel.exists()
    # builtins beyond plain containers (eval) are refused too
    _dump(d / "data_batch_3", {b"data": _EvalBomb(), b"labels": []})
    with pytest.raises(UserError, match="eval"):
        load_dataset(f"cifar10:{d}")


class _EvalBomb:
    def __reduce__(self):  # noqa: ANN204
        return (eval, ("1+1",))


def test_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        load_dataset(f"cifar10:{tmp_path}")
    write_cifar10(tmp_path, np.random.default_rng(5))
    d = tmp_path / "cifar-10-batches-py"
    (d / "test_batch").unlink()
    with pytest.raises(UserError, match="test_batch"):
        load_dataset(f"cifar10:{d}")
    (d / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="test_batch"):
        load_dataset(f"cifar10:{d}")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="bad.tar.gz"):
        load_dataset(f"cifar10:{bad}")


@pytest.mark.parametrize("case", ["label_out_of_range", "negative_label", "length_mismatch", "float_data",
                                  "wrong_width"])
def test_bad_batches(tmp_path: Path, case: str) -> None:
    rng = np.random.default_rng(6)
    write_cifar10(tmp_path, rng)
    data = rng.integers(0, 256, size=(N_PER_BATCH, 3072), dtype=np.uint8)
    labels = [0] * N_PER_BATCH
    if case == "label_out_of_range":
        labels[1] = 10
    elif case == "negative_label":
        labels[2] = -1
    elif case == "length_mismatch":
        labels = labels[:-1]
    elif case == "float_data":
        data = data.astype(np.float32)
    else:
        data = data[:, :3000]
    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_2", {b"data": data, b"labels": labels})
    with pytest.raises(UserError) as err:
        load_dataset(f"cifar10:{tmp_path}")
    assert "\n" not in str(err.value)
    if case in ("label_out_of_range", "negative_label"):
        assert "out of range" in str(err.value)


def test_archive_missing_member(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_cifar10(src, np.random.default_rng(7))
    (src / "cifar-10-batches-py" / "data_batch_5").unlink()
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(UserError, match="archive has no member cifar-10-batches-py/data_batch_5"):
        load_dataset(f"cifar10:{archive}")
