"""Hold simxir's bridge loss against the official code (KJ-rc/bridging-the-gap, ``main.py``'s
``Model.forward``, run as it is, not rewritten) and check that the bridging ImageNet recipes give
the optimisation they say.

The official step: 8 GPUs, each computes ``inv_coef * inv_loss + cov_coef * cov_loss`` on its
256 images (the two directions summed; standardisation through SyncBatchNorm, so global), DDP
averages the gradients. simxir on one process with ``partitions = k`` (eq. 19: the covariance term
summed over the k partitions) and ``directions = sum`` must then equal the mean over the k chunks
of the official loss with ``c_cov = cov_coef / k``: loss and gradients (z1, z2, W_p) in float64.
The official predictor has a bias (zero here); simxir's has none.

Usage (repo root, simxir's venv; SRC: a checkout of https://github.com/KJ-rc/bridging-the-gap):
    python benchmarks/checkpoints/verify_bridge_official.py SRC [--out results/checkpoints/bridge-official.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from simxir.config import read_recipe
from simxir.methods.bridge import bridge_loss
from simxir.recipes import find_recipe

ROOT = Path(__file__).resolve().parents[2]
GPUS = 8   # the official README's run


def official_model_class(src: Path) -> type:
    """``Model`` from the official main.py, executed with torchvision stubbed (only Model.__init__
    uses it, and this script does not call __init__)."""
    stub = types.ModuleType("torchvision")
    stub.transforms = types.ModuleType("torchvision.transforms")
    stub.datasets = types.ModuleType("torchvision.datasets")
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.transforms")}
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = stub, stub.transforms
    try:
        namespace: dict = {"__name__": "bridging_main"}
        exec(compile((src / "main.py").read_text(), str(src / "main.py"), "exec"), namespace)  # noqa: S102
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return namespace["Model"]


class _Predictor(nn.Module):
    """The official ``nn.Linear(d, d)`` predictor with its bias at zero, its weight the tensor ``w``
    the gradients are taken against (main.py reads ``predictor.weight``)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.weight = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


def official_loss(model_cls: type, z1: torch.Tensor, z2: torch.Tensor, w: torch.Tensor, inv_coef: float,
                  cov_coef: float, gpus: int) -> torch.Tensor:
    """The official per-GPU loss on each of ``gpus`` chunks of the (standardised) batch, averaged
    (DDP's gradient average); the backbone, projector and the already-global BN are identities."""
    m = model_cls.__new__(model_cls)
    nn.Module.__init__(m)
    d = z1.shape[1]
    m.backbone, m.projector, m.bn = nn.Identity(), nn.Identity(), nn.Identity()
    m.predictor = _Predictor(w)
    m.lincls = nn.Linear(d, 2).double()
    m.ce, m.mse_loss = nn.CrossEntropyLoss(), nn.MSELoss(reduction="mean")
    total = z1.new_zeros(())
    for a, b in zip(z1.chunk(gpus), z2.chunk(gpus)):
        labels = torch.zeros(a.shape[0], dtype=torch.long)
        inv, cov, _, _ = m.forward(a, b, labels)
        total = total + inv_coef * inv + cov_coef * cov
    return total / gpus


def compare(model_cls: type, n: int, d: int, gpus: int, inv_coef: float, cov_coef: float,
            simxir_c_inv: float, simxir_c_cov: float, partitions: int, directions: str, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    raw1, raw2 = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(2))
    w0 = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    grads, losses = [], []
    for which in ("official", "simxir"):
        r1, r2, w = (t.clone().requires_grad_() for t in (raw1, raw2, w0))
        # SyncBatchNorm(affine=False) in training: the global batch's statistics
        z1, z2 = (F.batch_norm(r, None, None, training=True, eps=1e-5) for r in (r1, r2))
        if which == "official":
            loss = official_loss(model_cls, z1, z2, w, inv_coef, cov_coef, gpus)
        else:
            loss = bridge_loss(z1, z2, w, simxir_c_inv, simxir_c_cov, partitions, directions=directions)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append([r1.grad, r2.grad, w.grad])
    diff = max(float((a - b).abs().max()) for a, b in zip(*grads))
    return {"n": n, "d": d, "gpus": gpus, "official": {"inv_coef": inv_coef, "cov_coef": cov_coef},
            "simxir": {"c_inv": simxir_c_inv, "c_cov": simxir_c_cov, "partitions": partitions,
                       "directions": directions},
            "loss_official": losses[0], "loss_simxir": losses[1], "loss_diff": abs(losses[0] - losses[1]),
            "grad_diff": diff, "ok": abs(losses[0] - losses[1]) <= 1e-10 * max(1.0, abs(losses[0])) and diff <= 1e-10}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="checkout of KJ-rc/bridging-the-gap (main.py)")
    ap.add_argument("--out", type=Path, default=None,
                    help="write the JSON here (results/checkpoints/bridge-official.json); default: print only")
    a = ap.parse_args()
    model_cls = official_model_class(a.src)
    rows = []
    # the convention: simxir(c_inv, c_cov / k, k partitions, sum) == mean over k GPUs of official(c_inv, c_cov)
    for n, d, gpus, inv_coef, cov_coef in ((64, 16, 1, 8.0, 8.0), (64, 16, 2, 8.0, 8.0), (96, 24, 4, 25.0, 8.0),
                                           (128, 32, 8, 8.0, 8.0), (32, 48, 4, 10.0, 1.0), (80, 8, 8, 1.0, 0.0)):
        rows.append(compare(model_cls, n, d, gpus, inv_coef, cov_coef, inv_coef, cov_coef / gpus, gpus, "sum", n + d))
    # the mean convention is half of it
    half = compare(model_cls, 64, 16, 2, 4.0, 4.0, 8.0, 4.0, 2, "mean", 7)
    rows.append(half)
    # the recipe that claims to be main.py's defaults (inv 8, cov 8 on 8 GPUs)
    recipe = Path(find_recipe("bridging-s5/imagenet-bridge-code", "pretrain", "--recipe"))
    method = read_recipe(recipe, "recipe")["method"]
    k = int(method["partitions"]) * GPUS
    row = compare(model_cls, 8 * 24, 16, GPUS, 8.0, 8.0, float(method["c_inv"]), float(method["c_cov"]), k,
                  method.get("directions", "mean"), 11)
    row["recipe"] = str(recipe.relative_to(ROOT / "src" / "simxir")) if ROOT in recipe.parents else str(recipe)
    rows.append(row)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"source": "KJ-rc/bridging-the-gap main.py Model.forward", "rows": rows}, indent=1))
    for r in rows:
        print(f"n={r['n']} d={r['d']} gpus={r['gpus']} official {r['official']} simxir {r['simxir']}: "
              f"loss diff {r['loss_diff']:.2e}, grad diff {r['grad_diff']:.2e} {'OK' if r['ok'] else 'MISMATCH'}"
              + (f" ({r['recipe']})" if "recipe" in r else ""))
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
