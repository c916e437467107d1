"""Draws the benchmark's PNG chart from its JSON result (tests/bench/pipeline writes both).

    python chart.py RESULT.json OUT.png

Left: records/s of each system on each data set (medians). Right: where k2mc's time goes, by
stage, on each data set (median seconds per stage, stacked).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STAGES = ["fetch", "transform", "encode", "stage", "load", "commit"]


def main(result_path, out_path):
    with open(result_path) as f:
        result = json.load(f)
    datasets = result["datasets"]
    systems = [s for s in ["rskafka read", "k2mc", "k2mc before", "python peer", "strong python peer"] if any(s in d["systems"] for d in datasets)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))

    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        xs = [j + i * width for j in range(len(datasets))]
        ys = [d["systems"].get(system, {}).get("records_per_s", 0) for d in datasets]
        bars = left.bar(xs, ys, width, label=system)
        left.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=7)
    left.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(datasets))])
    left.set_xticklabels([f'{d["name"]}\n{d["records"]:,} records' for d in datasets])
    left.set_ylabel("records/s (median)")
    left.set_yscale("log")
    left.set_title("Throughput, one partition, same range and stack")
    left.legend(fontsize=8)

    bottoms = [0.0] * len(datasets)
    for stage in STAGES:
        ys = [d["systems"].get("k2mc", {}).get("stage_seconds", {}).get(stage, 0) for d in datasets]
        right.bar([d["name"] for d in datasets], ys, bottom=bottoms, label=stage)
        bottoms = [b + y for b, y in zip(bottoms, ys)]
    right.set_ylabel("seconds (median run)")
    right.set_title("k2mc backfill: time per stage")
    right.legend(fontsize=8)

    fig.suptitle(result.get("machine", ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
