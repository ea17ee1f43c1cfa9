#!/usr/bin/env python3
"""Compare Leukoscope's integer K-means and max-flow with OpenCV and PyMaxflow on the same inputs.

1. Integer K-means (Rust, histogram of 5-5-5 bins, deterministic seeding) vs OpenCV ``cv2.kmeans`` (float,
   k-means++, 1 attempt, 20 iterations, seeded RNG) on the same 640x480 frames, K = 3, nucleus cluster =
   largest B - G: median time per frame, speed ratio, and the Dice overlap of the two full-resolution nucleus
   masks, for ours with plain-count bin weights (cv2's objective) and with the device's sqrt(count) weights.
2. Boykov-Kolmogorov max-flow (Rust, `MaxFlow`) vs PyMaxflow (Boykov-Kolmogorov, C++) on the same crop graphs: flow values must agree;
   median solve times.

Test-only dependencies (install into the project venv, $LEUKOSCOPE_PYTHON):
    $LEUKOSCOPE_PYTHON -m pip install opencv-python-headless PyMaxflow
Usage (from the repository root):
    $LEUKOSCOPE_PYTHON scripts/bench_segment.py [FRAME ...]     # default: samples/smears/*.jpg
    SEGMENT_DUMP=target/release/examples/segment_dump $LEUKOSCOPE_PYTHON scripts/bench_segment.py  # prebuilt
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import cv2
    import maxflow
except ImportError as e:  # a clear message instead of a trace
    sys.exit(f"bench_segment.py: {e}; install with: python -m pip install opencv-python-headless PyMaxflow")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPS = 15


def cv2_masks(path, init_labels):
    """cv2.kmeans nucleus masks of one frame: k-means++ (1 attempt, timed; and best of 5 attempts), and Lloyd
    iterations started from ``init_labels`` (ours), which isolates float vs integer arithmetic from seeding."""
    bgr = cv2.imread(path)
    if bgr is None:
        raise SystemExit(f"{path}: cannot decode")
    rgb = bgr[:, :, ::-1]
    z = rgb.reshape(-1, 3).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)

    def nucleus_mask(labels, centres):
        return labels.ravel() == int(np.argmax(centres[:, 2] - centres[:, 1]))

    times = []
    cv2.setRNGSeed(1)  # k-means++ seeding is random: the same run gives the same table
    for _ in range(REPS):
        t = time.perf_counter()
        _, labels, centres = cv2.kmeans(z, 3, None, crit, 1, cv2.KMEANS_PP_CENTERS)
        mask = nucleus_mask(labels, centres)
        times.append((time.perf_counter() - t) * 1e3)
    cv2.setRNGSeed(1)
    _, labels, centres = cv2.kmeans(z, 3, None, crit, 5, cv2.KMEANS_PP_CENTERS)
    best5 = nucleus_mask(labels, centres)
    init = init_labels.astype(np.int32).reshape(-1, 1)
    _, labels, centres = cv2.kmeans(z, 3, init, crit, 1, cv2.KMEANS_USE_INITIAL_LABELS)
    same_start = nucleus_mask(labels, centres)
    return mask, float(np.median(times)), best5, same_start


def cv2_weighted_mask(path):
    """The device's objective in float: cv2.kmeans (best of 5 k-means++ attempts) on the 5-5-5 histogram's bin
    centres, each repeated isqrt(count) times (the device weighs bins by the integer square root of their
    count); every pixel then takes the nearest float centroid. Compared with our integer K-means, this measures
    the fixed-point arithmetic and the deterministic seeding, not the choice of objective."""
    rgb = cv2.imread(path)[:, :, ::-1].reshape(-1, 3)
    bins = ((rgb[:, 0].astype(np.int64) >> 3) << 10) | ((rgb[:, 1].astype(np.int64) >> 3) << 5) | (rgb[:, 2] >> 3)
    counts = np.bincount(bins, minlength=1 << 15)
    occupied = np.nonzero(counts)[0]
    weights = np.floor(np.sqrt(counts[occupied])).astype(np.int64)
    centres = np.stack([(occupied >> 10) & 31, (occupied >> 5) & 31, occupied & 31], axis=1) * 8 + 4
    z = np.repeat(centres, weights, axis=0).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(1)
    _, _, c = cv2.kmeans(z, 3, None, crit, 5, cv2.KMEANS_PP_CENTERS)
    d = ((rgb[:, None, :].astype(np.float32) - c[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1) == int(np.argmax(c[:, 2] - c[:, 1]))


def pymaxflow(graph_path):
    with open(graph_path) as f:
        w, h = map(int, f.readline().split())
        rows = [line.split() for line in f]
    tw = [(int(r[1]), int(r[2]), int(r[3])) for r in rows if r[0] == "t"]
    nl = [(int(r[1]), int(r[2]), int(r[3])) for r in rows if r[0] == "n"]
    times, value = [], None
    for _ in range(REPS):
        g = maxflow.Graph[int](w * h, len(nl))
        g.add_nodes(w * h)
        for i, s, t in tw:
            g.add_tedge(i, s, t)
        for i, j, c in nl:
            g.add_edge(i, j, c, c)
        t = time.perf_counter()
        value = g.maxflow()
        times.append((time.perf_counter() - t) * 1e3)
    return value, float(np.median(times)), w * h


def main():
    frames = sys.argv[1:] or sorted(glob.glob(os.path.join(ROOT, "samples", "smears", "*.jpg")))
    out = tempfile.mkdtemp(prefix="leuko-bench-")
    # SEGMENT_DUMP=path/to/segment_dump runs an already built dump example instead of `cargo run --release`.
    prebuilt = os.environ.get("SEGMENT_DUMP")
    cmd = [prebuilt, out, *frames] if prebuilt else [
        "cargo", "run", "--release", "--quiet", "-p", "leukoscope", "--features", "testing", "--example", "segment_dump",
        "--", out, *frames]
    dump = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in dump.splitlines() if line.startswith("{")]
    print("| frame | integer K-means ms (√count / counts) | cv2.kmeans ms | speed-up (counts) "
          "| Dice, counts vs cv2 from our start | Dice, counts vs cv2 best of 5 | Dice, √count vs cv2 best of 5 "
          "| Dice, √count vs cv2 on the √count histogram "
          "| crop nodes | BK (ours) ms | Dinic (ours) ms | PyMaxflow ms | flows equal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    d_start, d_best, d_dev, d_same, ratios, equal = [], [], [], [], [], 0

    def dice(a, b):
        return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())

    for r in rows:
        def ours(suffix):
            return np.fromfile(os.path.join(out, r["stem"] + suffix), dtype=np.uint8)

        counts = ours(".kmeans-counts.u8").astype(bool)
        _, cv_ms, best5, same_start = cv2_masks(r["frame"], ours(".kmeans-counts.labels.u8"))
        d_start.append(dice(counts, same_start))
        d_best.append(dice(counts, best5))
        device = ours(".kmeans.u8").astype(bool)
        d_dev.append(dice(device, best5))
        d_same.append(dice(device, cv2_weighted_mask(r["frame"])))
        value, pm_ms, nodes = pymaxflow(os.path.join(out, r["stem"] + ".graph.txt"))
        same = value == r["flow"]
        verdict = "yes" if same else "NO (%d vs %d)" % (r["flow"], value)
        equal += same
        ratios.append(cv_ms / r["kmeans_counts_ms"])
        print(f"| {r['stem']} | {r['kmeans_ms']:.2f} / {r['kmeans_counts_ms']:.2f} | {cv_ms:.2f} "
              f"| {cv_ms / r['kmeans_counts_ms']:.1f}x | {d_start[-1]:.3f} | {d_best[-1]:.3f} | {d_dev[-1]:.3f} "
              f"| {d_same[-1]:.3f} "
              f"| {nodes} | {r['flow_ms']:.2f} | {r['dinic_ms']:.2f} | {pm_ms:.2f} | {verdict} |")
    if rows:
        print(f"\nmedian speed-up {np.median(ratios):.1f}x (cv2 one attempt); Dice of the nucleus masks, median / min: "
              f"plain counts vs cv2 from our start {np.median(d_start):.3f} / {np.min(d_start):.3f}, "
              f"vs cv2 best of 5 {np.median(d_best):.3f} / {np.min(d_best):.3f}; "
              f"device √count vs cv2 best of 5 {np.median(d_dev):.3f} / {np.min(d_dev):.3f}; "
              f"device vs cv2 on the same √count histogram {np.median(d_same):.3f} / {np.min(d_same):.3f}; "
              f"flows equal {equal}/{len(rows)}")
    return 0 if equal == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
