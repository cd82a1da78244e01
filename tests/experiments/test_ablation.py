"""Table 3 ablation runner: row switches reach the bridge config; a tiny real run through the engine."""

from __future__ import annotations

import json
import math

import pytest

from simxir.errors import UserError
from simxir.experiments.ablation import PAPER_ROWS, TABLE3_ROWS, AblationRow, format_table, run_ablation, select_rows


def test_rows_set_the_bridge_switches():
    from simxir.methods.bridge import BridgeConfig
    from simxir.train.assemble import build_config

    for row in TABLE3_ROWS:
        cfg = build_config("bridge", None, ["method.proj_sizes=[16,16]"] + row.method_overrides(), None)
        m = BridgeConfig(**cfg.method)
        assert (m.c_inv, m.c_cov, m.standardize, m.stop_gradient) == (
            row.c_inv, row.c_cov, row.standardize, row.stop_gradient)
        assert m.predictor == ("identity" if row.identity_predictor else "linear")
        assert m.proj_sizes == [16, 16]
    names = [r.name for r in TABLE3_ROWS]
    assert len(set(names)) == len(names)
    full = TABLE3_ROWS[0]
    # every other row differs from the full method in at least one switch
    assert all(r.switches() != full.switches() for r in TABLE3_ROWS[1:])


def test_select_rows():
    assert select_rows(None) == list(PAPER_ROWS)   # the paper's Table 3 by default
    assert [r.name for r in select_rows(["stopgrad", "full"])] == ["stopgrad", "full"]
    with pytest.raises(UserError, match="--rows"):
        select_rows(["full", "no-such-row"])


def test_format_table_marks_switches_and_collapse():
    summary = {"data": "digits", "epochs": 3, "knn_k": 5, "rows": [
        {"row": "i-pred", **AblationRow("i-pred", identity_predictor=True).switches(), "status": "COLLAPSE",
         "probe_test_top1": 0.1, "decorrelation": None},
        {"row": "full", **AblationRow("full").switches(), "status": "91.0", "probe_test_top1": math.nan,
         "decorrelation": 12.5},
    ]}
    lines = format_table(summary).splitlines()
    assert lines[-2] == "| i-pred | 8 | 8 | x | x |  | COLLAPSE | 10.0 |  |"
    assert lines[-1] == "| full | 8 | 8 | x |  |  | 91.0 |  | 12.5 |"


@pytest.mark.slow
def test_tiny_run_through_the_engine(tmp_path):
    rows = select_rows(["i-pred-no-covariance"])
    s = run_ablation(rows, tmp_path, overrides=[
        "epochs=1", "batch_size=128", "precision=fp32", "tensorboard=false", "optim.name=adamw",
        "optim.lr=0.001", "monitor.eval_size=128", "method.proj_sizes=[32,32]"], data="digits", knn_k=5)
    assert [r["row"] for r in s["rows"]] == ["i-pred-no-covariance"]
    for r in s["rows"]:
        assert (r["status"] in ("COLLAPSED", "COLLAPSED (diverged)", "DIVERGED", "FAILED")
                or 0.0 <= float(r["status"]) <= 100.0)
        assert (tmp_path / r["row"] / "metrics.csv").is_file()
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert saved["rows"][0]["row"] == "i-pred-no-covariance" and saved["epochs"] == 1
    assert saved["rows"][0]["I-PRED"] is True and saved["rows"][0]["c_cov"] == 0.0
    assert "| i-pred-no-covariance |" in (tmp_path / "ablation.md").read_text()


def test_paper_rows_are_the_papers_table3_and_the_group_expands():
    from simxir.experiments.ablation import PAPER_ROWS

    rows = select_rows(["paper"])
    assert rows == list(PAPER_ROWS)
    in_table = [r for r in rows if r.paper is not None]
    assert len(in_table) == 9                                  # the paper's Table 3 has 9 rows
    assert all(r.c_inv == 1.0 and r.c_cov in (0.0, 1.0) for r in rows)
    # the paper's collapsed rows are exactly those without STD and without stop-gradient,
    # except I-PRED with the covariance term (62.6)
    collapsed = {(r.c_cov, r.identity_predictor) for r in in_table if r.paper == "COLLAPSE"}
    assert collapsed == {(0.0, False), (1.0, False), (0.0, True)}
    assert all(not r.standardize and not r.stop_gradient for r in in_table if r.paper == "COLLAPSE")
    assert [r.name for r in select_rows(["full", "paper"])][:2] == ["full", rows[0].name]


def test_format_table_adds_the_paper_column_when_rows_have_one():
    r = AblationRow("paper-no-std", 1.0, 1.0, standardize=False, paper="COLLAPSE")
    summary = {"data": "digits", "epochs": 1, "knn_k": 5, "rows": [
        {"row": r.name, **r.switches(), "paper": r.paper, "status": "COLLAPSE", "probe_test_top1": 0.2,
         "decorrelation": 3.0}]}
    lines = format_table(summary).splitlines()
    assert lines[2].endswith("| paper (ImageNet linear) |")
    assert lines[-1] == "| paper-no-std | 1 | 1 |  |  |  | COLLAPSE | 20.0 | 3 | COLLAPSE |"
