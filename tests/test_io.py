from __future__ import annotations

import os

import pytest
import torch

from simxir.errors import UserError
from simxir.io import atomic_save, atomic_write_json, load_checkpoint


def test_atomic_save_round_trip_and_no_temp_left(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    atomic_save({"w": torch.arange(5.0)}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(5.0))
    assert os.listdir(path.parent) == ["ckpt.pt"]


def test_atomic_save_failure_keeps_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"w": torch.ones(2)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        atomic_save({"w": Boom()}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(2))
    assert os.listdir(tmp_path) == ["ckpt.pt"]


class Custom:  # a class that weights_only loading refuses
    def __init__(self):
        self.x = 1


def test_pickle_checkpoint_refused_unless_allowed(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"obj": Custom()}, path)
    with pytest.raises(UserError, match="--allow-pickle"):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_pickle=True)["obj"].x == 1


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="junk.pt"):
        load_checkpoint(junk)


def test_atomic_json(tmp_path):
    atomic_write_json({"a": 1}, tmp_path / "r.json")
    assert (tmp_path / "r.json").read_text().strip() == '{\n  "a": 1\n}'


def test_atomic_files_get_the_mode_a_plain_open_would(tmp_path):
    atomic_write_json({"a": 1}, tmp_path / "r.json")
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
