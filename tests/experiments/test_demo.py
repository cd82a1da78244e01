"""``simxir demo`` end to end, shortened: every stage runs and the report holds all three evals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simxir.errors import UserError
from simxir.experiments.demo import run_demo


@pytest.mark.slow
def test_demo_pipeline_short(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(out, method="simsiam", pretrain_epochs=1, finetune_epochs=1, linear_epochs=3,
                      lrs=(5e-4, 5e-2), seeds=2)
    for key in ("random", "pretrained", "finetuned"):
        assert set(result[key]["knn"]) == {"cosine", "euclidean"}
        assert 0 < result[key]["linear"]["top1"] <= 100
    assert result["pretrained"] != result["finetuned"]            # fine-tuning changed the encoder
    saved = json.loads((out / "demo.json").read_text())
    assert saved["finetuned"] == result["finetuned"]
    report = (out / "report.md").read_text()
    assert "| random init |" in report and "| + SimXIR |" in report and "| change |" in report
    assert (out / "finetune" / "knn_over_k.png").stat().st_size > 1000
    assert (out / "demo.png").stat().st_size > 1000
    # how sure: paired intervals on the same test images, and the lr chosen on validation only
    head = result["paired"]["knn"]["cosine"]["11"]
    assert head["ci_low"] <= head["change"] <= head["ci_high"] and head["n"] == 360
    assert [s["lr"] for s in result["lr_selection"]] == [5e-4, 5e-2] and result["lr"] in (5e-4, 5e-2)
    assert "How sure are we?" in report and "95% CI" in report and "McNemar" in report
    # two seeds: the headline is their mean change, paired per seed on the same test images
    over = result["over_seeds"]["knn"]["cosine"]["11"]
    assert result["seeds"] == [0, 1] and over["seeds"] == 2 and len(over["changes"]) == 2
    assert over["changes"][0] == pytest.approx(head["change"])          # seed 0 is the tables' run
    assert over["change"] == pytest.approx(sum(over["changes"]) / 2)
    assert (out / "finetune-seed1" / "results.json").is_file() and "## Over seeds" in report
    for name in ("random init", "pretrained", "+ SimXIR"):
        g = result["geometry"][name]
        assert g["within_class_msd"] > 0 and g["between_class_msd"] > 0 and g["ratio"] > 0
    with pytest.raises(UserError, match="already holds a demo run"):
        run_demo(out, pretrain_epochs=1, finetune_epochs=1)


def test_class_geometry_matches_a_direct_computation():
    from simxir.experiments.demo import class_geometry

    g = torch.Generator().manual_seed(0)
    f = torch.randn(60, 5, generator=g)
    y = torch.arange(60) % 3
    u = torch.nn.functional.normalize(f.double(), dim=1).numpy()
    lab = y.numpy()
    within = np.mean([((u[lab == c][:, None] - u[lab == c][None]) ** 2).sum(-1).mean() for c in range(3)])
    between = np.mean([((u[lab == a][:, None] - u[lab == b][None]) ** 2).sum(-1).mean()
                       for a in range(3) for b in range(a + 1, 3)])
    res = class_geometry(f, y)
    assert res["within_class_msd"] == pytest.approx(within) and res["between_class_msd"] == pytest.approx(between)
