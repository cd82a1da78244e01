"""``simxir demo`` end to end, shortened: every stage runs and the report holds all three evals."""

from __future__ import annotations

import json

import pytest

from simxir.demo import run_demo
from simxir.errors import UserError


@pytest.mark.slow
def test_demo_pipeline_short(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(out, method="simsiam", pretrain_epochs=1, finetune_epochs=1, linear_epochs=3)
    for key in ("random", "pretrained", "finetuned"):
        assert set(result[key]["knn"]) == {"cosine", "euclidean"}
        assert 0 < result[key]["linear"]["top1"] <= 100
    assert result["pretrained"] != result["finetuned"]            # fine-tuning changed the encoder
    saved = json.loads((out / "demo.json").read_text())
    assert saved["finetuned"] == result["finetuned"]
    report = (out / "report.md").read_text()
    assert "| random init |" in report and "| + SimXIR |" in report and "| change |" in report
    assert (out / "finetune" / "knn_over_k.png").stat().st_size > 1000
    with pytest.raises(UserError, match="already holds a demo run"):
        run_demo(out, pretrain_epochs=1, finetune_epochs=1)
