#!/usr/bin/env python3
"""One Markdown table of scripts/stain_candidates.sh's runs: VAL, TEST, second lab zero-shot and calibrated, BCCD."""
import glob, json, os, re, sys

C = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]


def one(pattern):
    hits = glob.glob(pattern)
    return json.load(open(hits[0])) if hits else None


def pct(v):
    return f"{100 * v:.1f}"


print("| model | stain | VAL | TEST | TEST sens. EOS / LYM / MONO / NEU | 2nd lab zero-shot | EOS / LYM / MONO / NEU "
      "| `head` 5 / 10 / 20 cells a class | `norm-head` 5 / 10 / 20 | BCCD test smears typed |")
print("|---|---|---:|---:|---|---:|---|---|---|---:|")
for run in sys.argv[1:]:
    name = os.path.basename(run.rstrip("/"))
    base, method = name.rsplit("-", 1)
    val, test = one(f"{run}/*-val.json"), one(f"{run}/*-test.json")
    site = one(f"{run}/site-jiangxi.json")
    v = pct(val["average"]["accuracy"]) if val else "–"
    t = pct(test["average"]["accuracy"]) if test else "–"
    ts = " / ".join(pct(test["per_class"][c]["sensitivity"]) for c in C) if test else "–"
    z, zc, adapted = "–", "–", {}
    if site:
        z = pct(site["zero_shot"]["overall"])
        zc = " / ".join(pct(site["zero_shot"]["per_class"][c]) for c in C)
        for a in site.get("adapted") or []:
            o = a["overall"]
            adapted.setdefault(a["method"], {})[a["cells_per_class"]] = f"{pct(o['mean'])} ± {pct(o['sd'])}"
    cal = [" / ".join(adapted.get(m, {}).get(k, "–") for k in (5, 10, 20)) for m in ("head", "norm-head")]
    bccd = "–"
    if os.path.exists(f"{run}/bccd.md"):
        m = re.search(r"\| end to end \| \d+ \| \d+ \| (\d+) \(([\d.]+) %\)", open(f"{run}/bccd.md").read())
        if m:
            bccd = f"{m.group(1)} ({m.group(2)} %)"
    print(f"| `{base}` | {method} | {v} | {t} | {ts} | {z} | {zc} | {cal[0]} | {cal[1]} | {bccd} |")
