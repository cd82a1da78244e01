"""SimXIR on a folder of unlabelled photos: the label-free before/after (report, results.json,
--json), with and without a labelled --eval-data, and the tuned encoder back in its format."""

from __future__ import annotations

import json

import pytest
from stream_helpers import jpeg_folder
from test_unlabelled import photo_folder

from simxir.eval.labelfree import METRICS
from simxir.models import build_backbone, load_encoder, save_encoder


@pytest.fixture
def finetune(cli):
    """``finetune(argv)``: simxir finetune ARGV --json, which must succeed; its JSON object."""
    def run(argv):
        r = cli(["finetune", *argv, "--json"])
        assert r.code == 0, r.err_lines[-5:]
        return r.json

    return run


@pytest.mark.slow
def test_finetune_on_unlabelled_photos_reports_label_free_numbers(tmp_path, finetune):
    photos = tmp_path / "photos"
    photo_folder(photos, 24, side=24)
    labelled = jpeg_folder(tmp_path / "lab", 12, 6, w=24, h=20)
    enc = tmp_path / "enc.safetensors"
    save_encoder(build_backbone("convnet-small"), enc)
    common = ["--encoder", str(enc), "--data", f"folder:{photos}", "--label-free-images", "16", "epochs=1",
              "image_size=16", "tensorboard=false", "precision=fp32"]
    alone = finetune([*common, "--out", tmp_path / "a"])
    assert alone["before"].keys() == {"label_free"} and alone["after"].keys() == {"label_free"}
    change = alone["label_free_change"]
    assert set(change) == set(METRICS)
    for m in METRICS:
        c = change[m]
        assert c["before"] == pytest.approx(alone["before"]["label_free"][m])
        assert c["after"] == pytest.approx(alone["after"]["label_free"][m])
        assert c["ci_low"] <= c["change"] <= c["ci_high"]
        assert c["verdict"] == ("rose" if c["ci_low"] > 0 else "fell" if c["ci_high"] < 0 else "within noise")
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["label_free_change"] == change
    report = (tmp_path / "a" / "report.md").read_text()
    assert "No labels" in report and "RankMe" in report and "None of them is accuracy" in report
    tuned, _ = load_encoder(tmp_path / "a" / "encoder.safetensors")
    assert tuned.arch == "convnet-small"

    with_eval = finetune([*common, "--eval-data", f"folder:{labelled}", "--knn", "3", "--linear-epochs", "2",
                          "--out", tmp_path / "b"])
    assert "knn" in with_eval["before"] and "linear" in with_eval["after"] and "label_free" in with_eval["after"]
    # the same images, encoder and seed: the label-free numbers before do not depend on --eval-data
    for m in METRICS:
        assert with_eval["before"]["label_free"][m] == pytest.approx(alone["before"]["label_free"][m])
    assert "--eval-data folder:" in (tmp_path / "b" / "report.md").read_text()
