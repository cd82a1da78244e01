from __future__ import annotations

import argparse
import os
import pickle

import pytest
import torch

from simxir.errors import UserError
from simxir.io import atomic_save, atomic_write_json, load_checkpoint, read_npz


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


def test_read_npz_errors_name_option_path_and_keys(tmp_path):
    import numpy as np

    from simxir.io import read_npz

    np.savez(tmp_path / "a.npz", x=np.arange(3), y=np.ones(2))
    got = read_npz(tmp_path / "a.npz", ("x",), optional=("y", "z"))
    assert set(got) == {"x", "y"} and got["x"].tolist() == [0, 1, 2]
    with pytest.raises(UserError, match=r"--f .*a.npz: missing key\(s\) w .*found x, y"):
        read_npz(tmp_path / "a.npz", ("w",), option="--f")
    with pytest.raises(UserError, match="no such file .*keys x"):
        read_npz(tmp_path / "b.npz", ("x",))
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UserError, match="o.npz: not a readable .npz of numeric arrays"):
        read_npz(tmp_path / "o.npz", ("x",))
    (tmp_path / "t.npz").write_text("not a zip")
    with pytest.raises(UserError, match="t.npz: not a readable .npz"):
        read_npz(tmp_path / "t.npz", ("x",))


def test_ctrl_c_during_a_checkpoint_write_waits_for_a_complete_file(tmp_path, monkeypatch):
    """A SIGINT that arrives while torch.save writes is delivered after the file is complete."""
    import os
    import signal

    import torch

    from simxir.io import atomic_save, load_checkpoint

    real_save = torch.save

    def interrupted_save(obj, f):
        os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C arrives in the middle of the write
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", interrupted_save)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"w": torch.arange(5)}, tmp_path / "checkpoint.pt")
    assert torch.equal(load_checkpoint(tmp_path / "checkpoint.pt")["w"], torch.arange(5))
    assert signal.getsignal(signal.SIGINT) is before      # the handler is put back


def test_to_python_makes_plain_values_and_json_safe_drops_non_finite():
    import math

    import numpy as np
    import torch

    from simxir.io import json_safe, to_python

    v = {1: (np.float32(0.5), torch.tensor(2)), "x": [np.int64(3), float("nan")], "t": torch.zeros(2)}
    out = to_python(v)
    assert out["1"] == [0.5, 2] and type(out["1"][0]) is float and type(out["1"][1]) is int
    assert out["x"][0] == 3 and type(out["x"][0]) is int and math.isnan(out["x"][1])
    assert isinstance(out["t"], torch.Tensor)          # only scalars are unwrapped
    assert json_safe({"a": [float("inf"), np.float64(-math.inf), 1.0]}) == {"a": [None, None, 1.0]}


def test_pickles_that_need_unpickling_are_refused_then_loaded_when_trusted(tmp_path):
    ns = tmp_path / "ns.pt"       # torch.save of a dict holding a non-allow-listed global
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {"w": torch.ones(2)}}, ns)
    raw = tmp_path / "raw.pkl"    # a plain pickle (protocol 4): the weights-only unpickler's opcode error
    raw.write_bytes(pickle.dumps({"args": argparse.Namespace(lr=0.2)}, protocol=4))
    legacy = tmp_path / "legacy.pt"   # torch's pre-1.6 (non-zip) format
    torch.save({"args": argparse.Namespace(lr=0.3)}, legacy, _use_new_zipfile_serialization=False)
    for path, lr in ((ns, 0.1), (legacy, 0.3)):
        with pytest.raises(UserError, match="pass --allow-pickle"):
            load_checkpoint(path)
        assert load_checkpoint(path, allow_pickle=True)["args"].lr == lr
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path in (raw, garbage):       # not torch.save's format: no --allow-pickle suggestion
        for allow in (False, True):
            with pytest.raises(UserError, match="not a readable torch checkpoint"):
                load_checkpoint(path, allow_pickle=allow)


def test_a_directory_where_a_file_is_expected_says_so(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        load_checkpoint(tmp_path)
    with pytest.raises(UserError, match="is a directory"):
        read_npz(tmp_path, ("x",), option="--features")
    from simxir.analysis.predictor import load_predictor
    from simxir.config import ConfigError, read_recipe

    with pytest.raises(UserError, match="--predictor .*is a directory"):
        load_predictor(tmp_path, "--predictor")
    with pytest.raises(ConfigError, match="is a directory"):
        read_recipe(tmp_path)
