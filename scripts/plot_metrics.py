#!/usr/bin/env python3
"""Training curves from mmtune's metrics.jsonl as one PNG.

    python scripts/plot_metrics.py runs/x/metrics.jsonl -o curves.png
    python scripts/plot_metrics.py a/metrics.jsonl b/metrics.jsonl -o compare.png --smooth 0.9

One panel per metric (loss, each aux_*, val_loss, lr, grad_norm, tokens_per_s, peak memory),
step on the x axis, one line per input file. Skipped steps (loss null) leave gaps. Uses matplotlib
when it is installed; otherwise draws the same panels with Pillow, which the setup venv always has
(matplotlib is not in the lock file: it would pull eight more packages for one script).
"""
import argparse
import json
import math
import sys

PANELS = ["loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "samples_per_s", "peak_rss_bytes", "peak_cuda_bytes"]
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def read_runs(paths):
    """[(label, [record, ...])] from JSON-lines files; a line cut by a kill is skipped."""
    runs = []
    for path in paths:
        records = []
        try:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        print(f"{path}:{n}: not JSON, skipped", file=sys.stderr)
        except OSError as e:
            sys.exit(f"error: cannot read {path}: {e.strerror} (hint: pass the metrics.jsonl of a run's output_dir)")
        if not records:
            sys.exit(f"error: {path} has no metrics lines (hint: has the run done a step yet?)")
        runs.append((path, records))
    return runs


def panel_keys(runs, wanted):
    present = {k for _, recs in runs for r in recs for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    keys = wanted or [k for k in PANELS if k in present]
    if not wanted:
        aux = sorted(k for k in present if k.startswith("aux_"))
        keys = keys[:1] + aux + keys[1:]
    missing = [k for k in keys if k not in present]
    if missing:
        sys.exit(f"error: no values for {', '.join(missing)} (hint: keys present: {', '.join(sorted(present))})")
    return keys


def series(records, key, smooth):
    """(steps, values) with None where the value is absent or not finite, EMA-smoothed if asked."""
    xs, ys, ema = [], [], None
    for r in records:
        if "step" not in r:
            continue
        v = r.get(key)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if ok and smooth > 0:
            ema = v if ema is None else smooth * ema + (1 - smooth) * v
            v = ema
        xs.append(r["step"])
        ys.append(float(v) if ok else None)
    return xs, ys


def scale_label(key):
    return key + (" (GiB)" if key.endswith("_bytes") else "")


def scaled(key, ys):
    return [None if y is None else (y / 2**30 if key.endswith("_bytes") else y) for y in ys]


def plot_matplotlib(runs, keys, out, smooth):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), squeeze=False)
    for i, key in enumerate(keys):
        ax = axes[i // cols][i % cols]
        for j, (label, recs) in enumerate(runs):
            xs, ys = series(recs, key, smooth)
            ax.plot(xs, [math.nan if y is None else y for y in scaled(key, ys)], label=label, color=[c / 255 for c in COLOURS[j % len(COLOURS)]])
        ax.set_title(scale_label(key))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=7)
    for i in range(len(keys), rows * cols):
        axes[i // cols][i % cols].axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks, t = [], first
    while t <= hi + 1e-12 * step:
        ticks.append(t)
        t += step
    return ticks


def plot_pillow(runs, keys, out, smooth):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    pw, ph, cols = 520, 300, 2
    rows = (len(keys) + cols - 1) // cols
    img = Image.new("RGB", (pw * cols, ph * rows), "white")
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 70, 15, 28, 36
    for i, key in enumerate(keys):
        ox, oy = (i % cols) * pw, (i // cols) * ph
        data = []
        for j, (label, recs) in enumerate(runs):
            xs, ys = series(recs, key, smooth)
            data.append((xs, scaled(key, ys), COLOURS[j % len(COLOURS)], label))
        all_x = [x for xs, ys, _, _ in data for x, y in zip(xs, ys) if y is not None]
        all_y = [y for _, ys, _, _ in data for y in ys if y is not None]
        draw.text((ox + left, oy + 8), scale_label(key), fill="black", font=font)
        if not all_y:
            continue
        x0, x1 = min(all_x), max(all_x)
        y0, y1 = min(all_y), max(all_y)
        if x1 == x0:
            x1 = x0 + 1
        if y1 == y0:
            y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad
        ax0, ay0, ax1, ay1 = ox + left, oy + top, ox + pw - right, oy + ph - bottom

        def px(x, y):
            return ax0 + (x - x0) / (x1 - x0) * (ax1 - ax0), ay1 - (y - y0) / (y1 - y0) * (ay1 - ay0)

        yticks = nice_ticks(y0, y1)
        # enough significant digits that neighbouring ticks differ (0.3915 vs 0.392)
        tick_step = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
        digits = max(3, math.floor(math.log10(max(abs(y0), abs(y1)) or 1.0)) - math.floor(math.log10(tick_step)) + 1)
        for t in yticks:
            _, yy = px(x0, t)
            draw.line([(ax0, yy), (ax1, yy)], fill=(232, 232, 232))
            draw.text((ox + 4, yy - 5), f"{t:.{digits}g}", fill="black", font=font)
        for t in nice_ticks(x0, x1):
            xx, _ = px(t, y0)
            draw.line([(xx, ay0), (xx, ay1)], fill=(232, 232, 232))
            draw.text((xx - 8, ay1 + 4), f"{t:g}", fill="black", font=font)
        draw.rectangle([ax0, ay0, ax1, ay1], outline="black")
        draw.text(((ax0 + ax1) / 2 - 10, ay1 + 18), "step", fill="black", font=font)
        for xs, ys, colour, label in data:
            segment = []
            for x, y in zip(xs, ys):
                if y is None:  # a skipped step: a gap in the line
                    if len(segment) > 1:
                        draw.line(segment, fill=colour, width=2)
                    segment = []
                    continue
                segment.append(px(x, y))
            if len(segment) > 1:
                draw.line(segment, fill=colour, width=2)
            elif len(segment) == 1:
                (sx, sy), = segment
                draw.ellipse([sx - 2, sy - 2, sx + 2, sy + 2], fill=colour)
        if len(data) > 1:
            for j, (_, _, colour, label) in enumerate(data):
                draw.text((ax0 + 6, ay0 + 4 + 11 * j), label[-60:], fill=colour, font=font)
    img.save(out, "PNG")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metrics", nargs="+", help="metrics.jsonl file(s); several are overlaid")
    p.add_argument("-o", "--out", required=True, help="PNG to write")
    p.add_argument("--keys", default="", help="comma-separated metrics to plot (default: all known ones present)")
    p.add_argument("--smooth", type=float, default=0.0, help="EMA factor in [0, 1) applied to every curve")
    p.add_argument("--backend", choices=["auto", "matplotlib", "pillow"], default="auto")
    args = p.parse_args(argv)
    if not 0.0 <= args.smooth < 1.0:
        sys.exit("error: --smooth must be in [0, 1) (hint: 0.9 smooths strongly)")
    runs = read_runs(args.metrics)
    keys = panel_keys(runs, [k for k in args.keys.split(",") if k])
    backend = args.backend
    if backend == "auto":
        try:
            import matplotlib  # noqa: F401

            backend = "matplotlib"
        except ImportError:
            backend = "pillow"
    (plot_matplotlib if backend == "matplotlib" else plot_pillow)(runs, keys, args.out, args.smooth)
    print(f"wrote {args.out} ({backend}: {', '.join(keys)})")


if __name__ == "__main__":
    main()
