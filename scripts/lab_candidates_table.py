#!/usr/bin/env python3
"""One Markdown table of the issue-13 candidates: smear-grouped VAL (best epoch), second lab zero-shot, TEST."""
import json, os, sys, glob
rows = [("edge16 (shipped; second lab: its int8-weights form)", "models/results/edge16-test.json", "models/results/site-jiangxi.json", None)]
for run in sys.argv[1:]:
    n = os.path.basename(run.rstrip("/"))
    t = glob.glob(f"{run}/results/*-test.json") or glob.glob(f"{run}/results/*test*.json")
    rows.append((n, t[0] if t else None, f"{run}/site-jiangxi.json", f"{run}/train.json"))
C = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
print("| candidate | VAL acc (best epoch) | 2nd lab zero-shot | EOS | LYM | MONO | NEU | TEST acc | TEST sens. EOS / LYM / MONO / NEU |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for n, test, site, log in rows:
    val = "–"
    if log and os.path.exists(log):
        L = json.load(open(log)); b = L["best_epoch"]
        val = f"{100*L['epochs'][b-1]['val_acc']:.1f} (ep {b})"
    z = ["–"] * 5
    if os.path.exists(site):
        S = json.load(open(site))["zero_shot"]
        z = [f"{100*S['overall']:.1f}"] + [f"{100*S['per_class'][c]:.1f}" for c in C]
    ta, ts = "–", "–"
    if test and os.path.exists(test):
        T = json.load(open(test))
        ta = f"{100*T['average']['accuracy']:.1f}"
        ts = " / ".join(f"{100*T['per_class'][c]['sensitivity']:.1f}" for c in C)
    print(f"| {n} | {val} | {' | '.join(z)} | {ta} | {ts} |")
