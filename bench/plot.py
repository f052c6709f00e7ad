"""Bar chart of bench/results/latest.json: each figure's ratio to its same-run baseline, with
the target drawn where the target is a ratio. Writes bench/results/latest.png.

    python bench/plot.py [RESULTS.json]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"


def target_ratio(figure: dict) -> float | None:
    """The target as a ratio of the baseline; absolute targets become value-relative lines."""
    target = figure["target"]
    match = re.match(r"[<>]=?\s*([\d.]+)x", target)
    if match:
        return float(match.group(1))
    match = re.match(r"<\s*([\d.]+)\s*(ms|MB)", target)
    if match and figure["baseline_value"]:
        return float(match.group(1)) / figure["baseline_value"]
    return None


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "latest.json"
    report = json.loads(source.read_text())
    figures = [f for r in report["results"] for f in r.get("figures", []) if f["ratio"]]
    labels = [f"{f['metric']}\nvs {f['baseline']}" for f in figures]
    ratios = [f["ratio"] for f in figures]
    colors = [{True: "tab:green", False: "tab:red", None: "tab:gray"}[f["met"]] for f in figures]
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(figures) + 1.5))
    ys = range(len(figures))
    ax.barh(ys, ratios, color=colors)
    for y, f in zip(ys, figures, strict=True):
        ax.text(
            f["ratio"],
            y,
            f" {f['ratio']:.2f}x ({f['value']:.4g} {f['unit']})",
            va="center",
            fontsize=7,
        )
        goal = target_ratio(f)
        if goal is not None:
            ax.plot([goal, goal], [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="gray", linestyle=":")
    ax.set_xlabel("ratio to same-run baseline (log); black tick = target; green met, red missed")
    ax.set_title(
        f"Connectra Jobs benchmarks {report['started']}{' (quick)' if report['quick'] else ''}"
    )
    fig.tight_layout()
    out = source.with_suffix(".png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
