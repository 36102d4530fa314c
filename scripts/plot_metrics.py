#!/usr/bin/env python3
"""Plot a Lighthouse metrics.jsonl file to a PNG.

Each line of the file is one JSON object. Training records carry
{"step", "loss", "lr", "grad_norm", "tokens_per_s", ...}; validation records carry
{"step", "val_loss"}; either may carry "phase" (the attention phase index or name).

The top panel shows loss and val_loss against step (phase changes as vertical lines); the next
shows the learning rate; where records carry "sm_clock_mhz" (GPU runs with NVML), a last panel
shows the GPU's mean SM clock over each interval, to spot a card held down by its power limit.

Usage:
    python3 scripts/plot_metrics.py runs/x/metrics.jsonl -o loss.png [--title TEXT] [--log-y]
"""
import argparse
import json
import math
import os
import sys


class MetricsError(Exception):
    pass


def _number(value, path, lineno, key):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetricsError(f"{path}:{lineno}: \"{key}\" must be a number, got {value!r}")
    return float(value)


def read_metrics(path):
    """Returns (train, val, phases): lists of dicts with float values, in file order."""
    if not os.path.exists(path):
        raise MetricsError(f"{path}: no such file")
    if os.path.isdir(path):
        raise MetricsError(f"{path}: is a directory (expected a metrics .jsonl file)")
    train, val, phases = [], [], []
    records = 0
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                raise MetricsError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})")
            if not isinstance(rec, dict):
                raise MetricsError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            records += 1
            if "step" not in rec:
                continue  # e.g. a header/config record: nothing to plot
            step = _number(rec["step"], path, lineno, "step")
            if "phase" in rec and (not phases or phases[-1][1] != rec["phase"]):
                phases.append((step, rec["phase"]))
            if "val_loss" in rec:
                val.append({"step": step, "val_loss": _number(rec["val_loss"], path, lineno, "val_loss")})
            if "loss" in rec:
                entry = {"step": step, "loss": _number(rec["loss"], path, lineno, "loss")}
                for key in ("lr", "sm_clock_mhz"):
                    if key in rec:
                        entry[key] = _number(rec[key], path, lineno, key)
                train.append(entry)
    if records == 0:
        raise MetricsError(f"{path}: file is empty (no metric records)")
    if not train and not val:
        raise MetricsError(f"{path}: no records with \"step\" and \"loss\" or \"val_loss\"")
    return train, val, phases


def plot(train, val, phases, output, title=None, log_y=False):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MetricsError("matplotlib is not installed (try: python3 -m pip install --user matplotlib)")

    lr_points = [(r["step"], r["lr"]) for r in train if "lr" in r]
    clock_points = [(r["step"], r["sm_clock_mhz"]) for r in train if "sm_clock_mhz" in r]
    small = [pts for pts in (lr_points, clock_points) if pts]
    nrows = 1 + len(small)
    fig, axes = plt.subplots(nrows, 1, sharex=True, figsize=(9, 4 + 2 * len(small)),
                             gridspec_kw={"height_ratios": [3] + [1] * len(small)}, squeeze=False)
    ax = axes[0][0]
    finite = lambda pts: [(s, v) for s, v in pts if math.isfinite(v)]
    if train:
        pts = finite([(r["step"], r["loss"]) for r in train])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.0, label="train loss")
    if val:
        pts = finite([(r["step"], r["val_loss"]) for r in val])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, lw=1.2, label="val loss")
    for i, (step, name) in enumerate(phases):
        if i > 0:
            ax.axvline(step, color="gray", ls="--", lw=0.8)
        ax.annotate(str(name), (step, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                    color="gray", xytext=(3, -12), textcoords="offset points")
    ax.set_ylabel("loss (nats/token)")
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    row = 1
    if lr_points:
        ax_lr = axes[row][0]
        row += 1
        ax_lr.plot([p[0] for p in lr_points], [p[1] for p in lr_points], color="tab:green", lw=1.0)
        ax_lr.set_ylabel("lr")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax_lr.grid(True, alpha=0.3)
    if clock_points:
        ax_clk = axes[row][0]
        ax_clk.plot([p[0] for p in clock_points], [p[1] for p in clock_points], color="tab:red", lw=1.0)
        ax_clk.set_ylabel("SM clock (MHz)")
        ax_clk.grid(True, alpha=0.3)
    axes[-1][0].set_xlabel("step")
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Plot loss, val_loss and lr from a metrics.jsonl file.")
    parser.add_argument("metrics", help="path to metrics.jsonl (one JSON object per line)")
    parser.add_argument("-o", "--output", default=None,
                        help="output PNG (default: next to the metrics file, named loss.png)")
    parser.add_argument("--title", default=None, help="plot title (default: the run directory name)")
    parser.add_argument("--log-y", action="store_true", help="logarithmic loss axis")
    args = parser.parse_args(argv)
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(args.metrics)), "loss.png")
    title = args.title or os.path.basename(os.path.dirname(os.path.abspath(args.metrics)))
    try:
        train, val, phases = read_metrics(args.metrics)
        plot(train, val, phases, output, title=title, log_y=args.log_y)
    except MetricsError as e:
        print(f"plot_metrics: error: {e}", file=sys.stderr)
        return 1
    last = train[-1]["loss"] if train else float("nan")
    print(f"wrote {output} ({len(train)} train records, {len(val)} val records, last loss {last:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
