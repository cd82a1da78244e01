"""Text and markdown tables of evaluation results, in the layout of the SimXIR paper.

Table 1 (kNN top-1, %): columns k = 5, 7, 11, 15, 17, 21; rows "cos" and "euc" (and the weighted
cosine vote), or one row per result with cells "cos / euc" (:func:`format_knn_table`).
Table 2 (linear probe, %): top-1 and top-5.
:func:`format_comparison` lists every number before and after (e.g. SimXIR fine-tuning) with the
signed change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_SHORT = {"cosine": "cos", "euclidean": "euc"}


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """Right-aligned plain-text table (first column left-aligned), or a GitHub markdown table."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(x.rstrip() for x in out)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"


def _ks(result: Mapping[str, Any], kinds: Sequence[str] = ("knn", "knn_weighted")) -> list[str]:
    ks: set[int] = set()
    for kind in kinds:
        for by_k in (result.get(kind) or {}).values():
            ks.update(int(k) for k in by_k)
    return [str(k) for k in sorted(ks)]


def _get(result: Mapping[str, Any], kind: str, metric: str, k: str) -> float | None:
    return ((result.get(kind) or {}).get(metric) or {}).get(k)


def _title(title: str, markdown: bool) -> list[str]:
    if not title:
        return []
    return [f"### {title}", ""] if markdown else [title, ""]


def _knn_rows(result: Mapping[str, Any], ks: list[str], combined: bool) -> list[list[str]]:
    rows: list[list[str]] = []
    knn = result.get("knn") or {}
    if combined:
        cells = []
        for k in ks:
            c, e = _get(result, "knn", "cosine", k), _get(result, "knn", "euclidean", k)
            cells.append(f"{_fmt(c)} / {_fmt(e)}")
        rows.append(["cos / euc"] + cells)
    else:
        for met in knn:
            rows.append([_SHORT.get(met, met)] + [_fmt(_get(result, "knn", met, k)) for k in ks])
    for met in result.get("knn_weighted") or {}:
        label = f"{_SHORT.get(met, met)} weighted"
        rows.append([label] + [_fmt(_get(result, "knn_weighted", met, k)) for k in ks])
    return rows


def format_tables(result: Mapping[str, Any], title: str = "", combined: bool = False,
                  markdown: bool = False) -> str:
    """Table 1 (kNN top-1 per k; rows cos/euc/weighted, or one "cos / euc" row when ``combined``)
    and Table 2 (linear top-1 / top-5) for one ``evaluate_encoder`` / ``simxir eval --json`` result."""
    parts = _title(title, markdown)
    ks = _ks(result)
    if ks:
        parts.append("**Table 1: kNN top-1 accuracy (%)**" if markdown else "Table 1: kNN top-1 accuracy (%)")
        if markdown:
            parts.append("")
        parts.append(render_table(["metric"] + [f"k={k}" for k in ks], _knn_rows(result, ks, combined), markdown))
        parts.append("")
    lin = result.get("linear")
    if lin:
        parts.append("**Table 2: linear probe accuracy (%)**" if markdown else "Table 2: linear probe accuracy (%)")
        if markdown:
            parts.append("")
        parts.append(render_table(["top-1", "top-5"], [[_fmt(lin.get("top1")), _fmt(lin.get("top5"))]], markdown))
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def format_tables_markdown(result: Mapping[str, Any], title: str = "", combined: bool = False) -> str:
    """:func:`format_tables` as GitHub markdown tables."""
    return format_tables(result, title=title, combined=combined, markdown=True)


def format_knn_table(results: Mapping[str, Mapping[str, Any]], markdown: bool = False) -> str:
    """The paper's Table 1 for several results: one row per name, cells "cos / euc" per k."""
    ks = sorted({int(k) for r in results.values() for k in _ks(r, ("knn",))})
    sk = [str(k) for k in ks]
    rows = []
    for name, r in results.items():
        rows.append([name] + [f"{_fmt(_get(r, 'knn', 'cosine', k))} / {_fmt(_get(r, 'knn', 'euclidean', k))}"
                              for k in sk])
    return render_table(["method"] + [f"k={k}" for k in sk], rows, markdown) + "\n"


def _comparison_rows(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    ks = sorted({int(k) for r in (before, after) for k in _ks(r)})
    for kind, label in (("knn", "kNN"), ("knn_weighted", "kNN weighted")):
        metrics = list(dict.fromkeys(list(before.get(kind) or {}) + list(after.get(kind) or {})))
        for met in metrics:
            for k in map(str, ks):
                b, a = _get(before, kind, met, k), _get(after, kind, met, k)
                if b is None and a is None:
                    continue
                rows.append([f"{label} {_SHORT.get(met, met)}", f"k={k}", _fmt(b), _fmt(a), _delta(b, a)])
    bl, al = before.get("linear") or {}, after.get("linear") or {}
    for key, name in (("top1", "top-1"), ("top5", "top-5")):
        b, a = bl.get(key), al.get(key)
        if b is None and a is None:
            continue
        rows.append([f"linear {name}", "", _fmt(b), _fmt(a), _delta(b, a)])
    return rows


def _delta(b: float | None, a: float | None) -> str:
    return "-" if a is None or b is None else f"{float(a) - float(b):+.2f}"


def format_comparison(before: Mapping[str, Any], after: Mapping[str, Any], title: str = "",
                      markdown: bool = False, labels: tuple[str, str] = ("before", "after")) -> str:
    """Every accuracy of two results side by side with the signed change ``after - before``."""
    parts = _title(title, markdown)
    parts.append(render_table(["eval", "k", labels[0], labels[1], "change"], _comparison_rows(before, after), markdown))
    return "\n".join(parts).rstrip() + "\n"


def format_comparison_markdown(before: Mapping[str, Any], after: Mapping[str, Any], title: str = "",
                               labels: tuple[str, str] = ("before", "after")) -> str:
    """:func:`format_comparison` as a GitHub markdown table."""
    return format_comparison(before, after, title=title, markdown=True, labels=labels)


def format_label_free(summary: Mapping[str, Any], markdown: bool = False) -> str:
    """The label-free numbers of one encoder (``simxir.eval.labelfree.summarize``) with their 95%
    intervals over images."""
    ci = summary.get("ci") or {}
    names = {"rankme": "RankMe (effective rank)", "alignment": "alignment (2 views, lower: closer)",
             "uniformity": "uniformity (t=2, lower: more uniform)", "within": "within-cluster msd",
             "between": "between-cluster msd", "ratio": "within / between"}
    rows = [[name, f"{summary[m]:.4g}", "[" + ", ".join(f"{v:.4g}" for v in ci.get(m, [])) + "]"]
            for m, name in names.items() if m in summary]
    head = f"label-free, {summary.get('images')} train images, {summary.get('clusters')} k-means clusters"
    return render_table([head, "value", "95% CI"], rows, markdown) + "\n"


PAIRED_RULE = ("Paired over the same test images: change = after - before in points, its 95% bootstrap "
               "interval over test images (2,000 resamples), McNemar's exact p on the images that changed "
               "(fixed / broken); called a gain or a loss only when the interval excludes 0 and p < 0.05, "
               "borderline when only the interval does.")


def format_paired(cells: Mapping[str, Mapping[str, Any]], markdown: bool = False,
                  labels: tuple[str, str] = ("before", "after")) -> str:
    """One row per table cell of :func:`simxir.eval.paired.paired_cells`: both accuracies, the change
    with its 95% interval, McNemar's p, the images fixed / broken and the call."""
    if not cells:
        return ""
    rows = [[name, f"{c['before']:.2f}", f"{c['after']:.2f}", f"{c['change']:+.2f}",
             f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]", f"{c['mcnemar_p']:.2g}",
             f"{c['only_after']} / {c['only_before']}", c["call"]] for name, c in cells.items()]
    head = ["paired change", labels[0], labels[1], "change", "95% CI", "McNemar p", "fixed / broken", "call"]
    return render_table(head, rows, markdown) + "\n\n" + PAIRED_RULE + "\n"
