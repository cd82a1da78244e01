"""Each method's ``forward`` trains with exactly its tested pure loss: ``out["loss"]`` equals the
pure function applied to the very tensors the forward computed (caught with forward hooks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simxir.methods import build_method
from simxir.methods.barlow_twins import barlow_twins_loss
from simxir.methods.bridge import bridge_loss
from simxir.methods.byol import byol_loss
from simxir.methods.moco import infonce_loss
from simxir.methods.simclr import nt_xent_loss
from simxir.methods.simsiam import simsiam_loss
from simxir.methods.vicreg import vicreg_loss
from simxir.models import build_backbone


def _run(name: str, cfg: dict, watch: tuple[str, ...]):
    """(method, out, {module name: [outputs in call order]}) of one forward on random views."""
    torch.manual_seed(0)
    method = build_method(name, build_backbone("convnet-small"), cfg).train()
    seen: dict[str, list[torch.Tensor]] = {w: [] for w in watch}
    for w in watch:
        getattr(method, w).register_forward_hook(lambda _m, _i, out, w=w: seen[w].append(out))
    v1, v2 = torch.randn(2, 16, 3, 16, 16).unbind(0)
    queue = method.queue.clone() if hasattr(method, "queue") else None
    out = method([v1, v2])
    return method, out, seen, queue


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert torch.isfinite(a)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_simsiam():
    _, out, seen, _ = _run("simsiam", {"proj_hidden": 32, "proj_dim": 16, "pred_hidden": 8},
                           ("projector", "predictor"))
    (z1, z2), (p1, p2) = seen["projector"], seen["predictor"]
    _same(out["loss"], (simsiam_loss(p1, z2.detach()) + simsiam_loss(p2, z1.detach())) / 2)


def test_byol():
    _, out, seen, _ = _run("byol", {"proj_hidden": 32, "proj_dim": 16, "pred_hidden": 8},
                           ("predictor", "target_projector"))
    (p1, p2), (t1, t2) = seen["predictor"], seen["target_projector"]
    _same(out["loss"], byol_loss(p1, t2) + byol_loss(p2, t1))


@pytest.mark.parametrize("cfg", [{"lambd": 0.0051, "scale_loss": 1.0}, {"lambd": 0.02, "scale_loss": 0.025}])
def test_barlow_twins(cfg):
    _, out, seen, _ = _run("barlow_twins", {"proj_sizes": [32, 16], **cfg}, ("projector",))
    z1, z2 = seen["projector"]
    _same(out["loss"], barlow_twins_loss(z1, z2, cfg["lambd"], cfg["scale_loss"]))


def test_vicreg():
    cfg = {"sim_weight": 20.0, "var_weight": 30.0, "cov_weight": 2.0, "eps": 1e-3}
    _, out, seen, _ = _run("vicreg", {"proj_sizes": [32, 16], **cfg}, ("projector",))
    z1, z2 = seen["projector"]
    _same(out["loss"], vicreg_loss(z1, z2, **cfg))


@pytest.mark.parametrize("symmetric", [True, False])
def test_moco(symmetric):
    method, out, seen, queue = _run("moco", {"proj_hidden": 32, "proj_dim": 16, "queue_size": 64,
                                             "symmetric": symmetric}, ("projector", "momentum_projector"))
    (z1, z2), (m1, m2) = seen["projector"], seen["momentum_projector"]
    k1, k2 = F.normalize(m1, dim=-1), F.normalize(m2, dim=-1)
    t = method.cfg.temperature
    want = ((infonce_loss(z1, k2, queue[1], t) + infonce_loss(z2, k1, queue[0], t)) / 2 if symmetric
            else infonce_loss(z1, k2, queue[1], t))
    _same(out["loss"], want)


def test_simclr():
    method, out, seen, _ = _run("simclr", {"proj_hidden": 32, "proj_dim": 16, "temperature": 0.3},
                                ("projector",))
    z1, z2 = seen["projector"]
    _same(out["loss"], nt_xent_loss(z1, z2, 0.3))


@pytest.mark.parametrize("cfg", [{}, {"stop_gradient": True, "partitions": 2},
                                 {"predictor": "identity", "standardize": False, "inv_per_sample": True}])
def test_bridge(cfg):
    full = {"proj_sizes": [32, 16], "c_inv": 7.0, "c_cov": 3.0, **cfg}
    method, out, seen, _ = _run("bridge", full, ("standardizer",))
    s1, s2 = seen["standardizer"]
    w = torch.eye(16) if cfg.get("predictor") == "identity" else method.predictor.weight
    _same(out["loss"], bridge_loss(s1, s2, w, 7.0, 3.0, cfg.get("partitions", 1),
                                   cfg.get("stop_gradient", False), cfg.get("inv_per_sample", False)))
