"""aarch64 instruction counts of one inference for any models, the Pi cost proxy of models/README.md.

Run through scripts/insns.sh (it cross-builds `examples/infer` and the qemu plugin). The count is the one
`scripts/model_table.py` takes: `infer MODEL N` under qemu-aarch64 at N and at 0 with the insncount plugin,
difference / N, on Cortex-A72 (Pi 4) and Cortex-A76 (Pi 5). Exact and independent of the host CPU, but not
of the build (tract's version, the firmware's code): put the baseline first, so it is counted on the same build.
"""

import argparse
import json
import sys
from pathlib import Path

from model_table import card, insns


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--infer-aarch64", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--out", help="write OUT.md and OUT.json")
    ap.add_argument("-n", type=int, default=2, help="inferences counted (minus 0)")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    rows = []
    for m in a.models:
        c = card(Path(m))
        rows.append({
            "model": m,
            "sha256": c["sha256"],
            "bytes": Path(m).stat().st_size,
            "insns_a72": insns(Path(a.infer_aarch64), Path(a.plugin), m, "cortex-a72", a.n),
            "insns_a76": insns(Path(a.infer_aarch64), Path(a.plugin), m, "cortex-a76", a.n),
        })
    base = rows[0]["insns_a72"]
    lines = [
        "| model | bytes | A72 M insns | A76 M insns | A72 vs first |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| `{Path(r['model']).name}` | {r['bytes']:,} | {r['insns_a72'] / 1e6:.1f} | "
                     f"{r['insns_a76'] / 1e6:.1f} | {r['insns_a72'] / base:.2f}× |")
    table = "\n".join(lines)
    print(table)
    if a.out:
        cmd = f"INSNS_OUT={a.out} scripts/insns.sh " + " ".join(a.models)
        Path(a.out + ".md").write_text(
            "# aarch64 instructions per inference\n\n"
            f"Command: `{cmd}`\n\n"
            "qemu-aarch64 with `../shared/tools/qemu-insncount`, `examples/infer MODEL N` at N = "
            f"{a.n} and N = 0, difference / {a.n}: one inference, model loading excluded.\n\n" + table + "\n")
        Path(a.out + ".json").write_text(json.dumps(rows, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
