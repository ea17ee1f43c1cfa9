"""Measures float vs int8 models side by side and writes the table of models/README.md.

Run through scripts/model_table.sh (it builds what this needs). For each model file (card beside it):

- file size, and its share of the float model's;
- TEST accuracy, macro AUC and top-1 agreement with the float model (`leukoscope-train compare`, the device's
  own preprocessing and tract inference), and VAL accuracy for the edge models (what choices rest on);
- tract latency of one inference on one x86 core (criterion, `cargo bench --bench models`, pinned to CPU 0);
- onnxruntime latency of the same file in the same run (scripts/ort_bench.py, one thread, pinned to CPU 0);
- exact aarch64 instruction counts of one inference under qemu-aarch64 (Cortex-A72 = Pi 4, Cortex-A76 =
  Pi 5): `examples/infer MODEL N` counted at N and at 0 with the insncount plugin, difference / N.

Writes models/results/int8.md and int8.json, and replaces the block between the int8-table markers in
models/README.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- int8-table:start -->", "<!-- int8-table:end -->"


def run(cmd, env=None, **kw):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, env=env, text=True, **kw)


def card(model: Path) -> dict:
    return json.loads(model.with_suffix(".json").read_text())


def accuracy(train_bin: Path, models, split: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        run([train_bin, "compare", "--split", split, "--json", f.name, *models], stdout=sys.stderr)
        rows = json.loads(Path(f.name).read_text())
    return {r["model"]: r for r in rows}


def tract_latency(models, target_dir: Path) -> dict:
    # cargo runs benches from the package folder: absolute paths.
    env = dict(os.environ, LEUKOSCOPE_BENCH_MODELS=":".join(str(Path(m).resolve()) for m in models))
    run(["taskset", "-c", "0", "cargo", "bench", "-p", "leukoscope", "--bench", "models", "--", "--noplot"],
        env=env, cwd=ROOT, stdout=sys.stderr)
    out = {}
    for m in models:
        est = target_dir / "criterion" / "tract" / Path(m).stem / "new" / "estimates.json"
        out[str(m)] = json.loads(est.read_text())["median"]["point_estimate"] / 1e6
    return out


def ort_latency(python: str, models, runs: int) -> dict:
    res = run(["taskset", "-c", "0", python, ROOT / "scripts/ort_bench.py", "--runs", str(runs), *models],
              stdout=subprocess.PIPE)
    return {j["model"]: j["median_ms"] for j in map(json.loads, res.stdout.splitlines())}


def insns(infer: Path, plugin: Path, model, cpu: str, n: int) -> float:
    def count(k: int) -> int:
        env = dict(os.environ, QEMU_LD_PREFIX="/usr/aarch64-linux-gnu")
        res = run(["qemu-aarch64", "-cpu", cpu, "-plugin", plugin, "-d", "plugin", infer, model, str(k)],
                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        line = [l for l in res.stderr.splitlines() if l.startswith("insns:")][-1]
        return int(line.split()[1])

    return (count(n) - count(0)) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edge", nargs="+", action="append", required=True,
                    help="one edge net's models, float first (repeat for each edge net)")
    ap.add_argument("--report", nargs="*", default=[], help="a report model, float first")
    ap.add_argument("--train-bin", required=True)
    ap.add_argument("--infer-aarch64", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--target-dir", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--readme", default=str(ROOT / "models/README.md"))
    ap.add_argument("--out", default=str(ROOT / "models/results/int8"))
    a = ap.parse_args()

    groups = [("edge", [Path(m) for m in models]) for models in a.edge]
    if a.report:
        groups.append(("report", [Path(m) for m in a.report]))
    rows = []
    for group, models in groups:
        rel = [str(m) for m in models]
        test = accuracy(a.train_bin, rel, "TEST")
        val = accuracy(a.train_bin, rel, "VAL") if group == "edge" else {}
        tract = tract_latency(rel, Path(a.target_dir))
        ort = ort_latency(a.python, rel, 200 if group == "edge" else 20)
        float_size = models[0].stat().st_size
        for m in rel:
            c = card(Path(m))
            rows.append({
                "group": group,
                "model": m,
                "arch": c["arch"],
                "format": c["format"],
                "sha256": c["sha256"],
                "bytes": Path(m).stat().st_size,
                "size_vs_float": Path(m).stat().st_size / float_size,
                "float_model": rel[0],
                "test_accuracy": test[m]["accuracy"],
                "test_auc": test[m]["auc"],
                "top1_agreement_test": test[m]["top1_agreement"],
                "val_accuracy": val[m]["accuracy"] if m in val else None,
                "tract_ms": tract[m],
                "ort_ms": ort[m],
                "insns_a72": insns(a.infer_aarch64, a.plugin, m, "cortex-a72", 2),
                "insns_a76": insns(a.infer_aarch64, a.plugin, m, "cortex-a76", 2),
            })

    def pct(x):
        return "—" if x is None else f"{x * 100:.2f} %"

    lines = [
        "| model | format | file | vs float | TEST acc. | TEST macro AUC | top-1 = float (TEST) | VAL acc. "
        "| tract ms | onnxruntime ms | tract / ORT | A72 M insns | A76 M insns |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r['model']).name} | {r['format']} | {r['bytes'] / 1e6:.2f} MB | {r['size_vs_float'] * 100:.0f} % "
            f"| {pct(r['test_accuracy'])} | {pct(r['test_auc'])} | {pct(r['top1_agreement_test'])} "
            f"| {pct(r['val_accuracy'])} | {r['tract_ms']:.2f} | {r['ort_ms']:.2f} "
            f"| {r['tract_ms'] / r['ort_ms']:.2f}× | {r['insns_a72'] / 1e6:.1f} | {r['insns_a76'] / 1e6:.1f} |"
        )
    # The device default. Edge nets qualify when their float model's VAL accuracy is within 1 point of the best
    # edge net's (nets are chosen on validation data only); of their models, those within 1 point of their own
    # float model's TEST accuracy (the quantization loss); then the cheapest on the Pi proxy (A72
    # instructions), a tie (within 1 %) going to the smaller file.
    edge = [r for r in rows if r["group"] == "edge"]
    floats = {r["model"]: r for r in edge if r["model"] == r["float_model"]}
    best_val = max(r["val_accuracy"] for r in floats.values())
    nets = {m for m, r in floats.items() if r["val_accuracy"] >= best_val - 0.01}
    ok = [r for r in edge if r["float_model"] in nets
          and r["test_accuracy"] >= floats[r["float_model"]]["test_accuracy"] - 0.01]
    least = min(r["insns_a72"] for r in ok)
    best = min((r for r in ok if r["insns_a72"] <= least * 1.01), key=lambda r: r["bytes"])
    verdict = (
        f"Edge nets within 1 point of the best float VAL accuracy: "
        f"{', '.join(sorted(Path(m).stem for m in nets))}. Of their models within 1 point of their own float "
        f"model's TEST accuracy, the cheapest on the Cortex-A72 proxy (ties within 1 % of instructions go to the "
        f"smaller file): **{Path(best['model']).name}** ({best['format']}, {best['insns_a72'] / 1e6:.1f} M "
        f"instructions, {pct(best['test_accuracy'])} TEST, {pct(best['val_accuracy'])} VAL, "
        f"{best['size_vs_float'] * 100:.0f} % of the float file)."
    )
    table = "\n".join(lines)
    cmd = "scripts/model_table.sh"
    md = (
        f"{START}\n"
        f"Measured by `{cmd}` (one run; x86 timings on one pinned core of this machine, "
        f"`{os.uname().machine}`; instruction counts of one inference under qemu-aarch64 with "
        f"`../shared/tools/qemu-insncount`, run at N = 2 and N = 0 inferences, difference / 2).\n\n"
        f"{table}\n\n{verdict}\n{END}"
    )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(md + "\n")
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "default": best["model"]}, indent=2) + "\n")
    readme = Path(a.readme)
    text = readme.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(head + md + tail)
    else:
        readme.write_text(text.rstrip() + "\n\n" + md + "\n")
    print(md)


if __name__ == "__main__":
    main()
