"""Result tables: every number present, paper layout, markdown shape, signed comparison."""

from __future__ import annotations

import re

from simxir.eval.report import (
    format_comparison,
    format_comparison_markdown,
    format_knn_table,
    format_tables,
    format_tables_markdown,
)

KS = ("5", "7", "11", "15", "17", "21")


def _result(base: float) -> dict:
    return {
        "knn": {"cosine": {k: base + i for i, k in enumerate(KS)},
                "euclidean": {k: base + 10 + i / 4 for i, k in enumerate(KS)}},
        "knn_weighted": {"cosine": {k: base + 20 + i for i, k in enumerate(KS)}},
        "linear": {"top1": base + 30.125, "top5": base + 40.5},
    }


def test_tables_hold_every_number_in_rows_by_metric():
    r = _result(50.0)
    text = format_tables(r, title="my run")
    assert text.startswith("my run")
    header = next(line for line in text.splitlines() if line.startswith("metric"))
    assert re.findall(r"k=(\d+)", header) == list(KS)
    rows: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            rows.setdefault(line.split()[0], line)   # "cos" before "cos weighted"
    for metric, short in (("cosine", "cos"), ("euclidean", "euc")):
        cells = rows[short].split()[1:]
        assert cells == [f"{r['knn'][metric][k]:.2f}" for k in KS]
    assert f"{r['linear']['top1']:.2f}" in text and f"{r['linear']['top5']:.2f}" in text
    assert "weighted" in text and f"{r['knn_weighted']['cosine']['21']:.2f}" in text


def test_combined_row_and_markdown_shape():
    r = _result(60.0)
    md = format_tables_markdown(r, combined=True)
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    assert all(line.endswith("|") for line in table_lines)
    knn_header = table_lines[0]
    assert knn_header.count("|") == len(KS) + 2
    combined = next(line for line in table_lines if line.startswith("| cos / euc"))
    assert f"{r['knn']['cosine']['5']:.2f} / {r['knn']['euclidean']['5']:.2f}" in combined


def test_missing_linear_or_knn_is_left_out():
    r = _result(1.0)
    del r["linear"]
    assert "linear" not in format_tables(r)
    only_linear = {"linear": {"top1": 12.5, "top5": 33.0}}
    text = format_tables(only_linear)
    assert "kNN" not in text and "12.50" in text and "33.00" in text


def test_comparison_has_signed_changes_computed_per_cell():
    before, after = _result(50.0), _result(50.0)
    after["knn"]["cosine"]["5"] = 52.5      # +2.50
    after["knn"]["euclidean"]["21"] = before["knn"]["euclidean"]["21"] - 1.25
    after["linear"]["top1"] = before["linear"]["top1"] - 0.005
    text = format_comparison(before, after)
    lines = text.splitlines()
    cos5 = next(line for line in lines if line.startswith("kNN cos") and " k=5 " in line + " ")
    assert cos5.split()[-3:] == ["50.00", "52.50", "+2.50"]
    euc21 = next(line for line in lines if line.startswith("kNN euc") and "k=21" in line)
    assert euc21.split()[-1] == "-1.25"
    untouched = next(line for line in lines if line.startswith("kNN weighted cos") and "k=7" in line)
    assert untouched.split()[-1] == "+0.00"
    lin = next(line for line in lines if line.startswith("linear top-1"))
    assert lin.split()[-1] in ("-0.01", "-0.00")
    n_rows = 3 * len(KS) + 2
    assert len(lines) == 2 + n_rows
    md = format_comparison_markdown(before, after, labels=("pretrained", "SimXIR"))
    assert "| pretrained | SimXIR |" in md and "+2.50" in md
    assert len([line for line in md.splitlines() if line.startswith("|")]) == 2 + n_rows


def test_knn_table_one_row_per_method():
    text = format_knn_table({"byol": _result(70.0), "byol+simxir": _result(72.0)})
    lines = text.splitlines()
    assert lines[0].split()[1:] == [f"k={k}" for k in KS]
    row = next(line for line in lines if line.startswith("byol+simxir"))
    assert "72.00 / 82.00" in row
