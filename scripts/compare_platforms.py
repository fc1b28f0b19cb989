"""Compares an aarch64 run with an x86_64 run of the same inputs (scripts/test-arm64.sh).

OUT holds, from each platform: eval-<platform>.txt (``edgepose eval``'s report) and
<platform>-<model>.jsonl (``edgepose run`` on the reference images). The platforms agree when
PCK@0.1 is within 0.02, every image has the same number of people, and every keypoint is within
2 px and 0.05 score. Standard library only: it runs with any Python.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

PCK_TOLERANCE = 0.02
PX_TOLERANCE = 2.0
SCORE_TOLERANCE = 0.05


def pck(report: Path) -> float:
    m = re.search(r"PCK@0\.1 (\d+\.\d+)", report.read_text())
    if not m:
        raise SystemExit(f"compare: no PCK@0.1 in {report}")
    return float(m.group(1))


def by_image(path: Path) -> dict[str, list[dict]]:
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out[rec["file"].rsplit("/", 1)[-1]] = sorted(rec["people"], key=lambda p: (p["bbox"][0], p["bbox"][1]))
    return out


def compare(out: Path) -> list[str]:
    problems = []
    x86, arm = pck(out / "eval-x86.txt"), pck(out / "eval-arm64.txt")
    print(f"eval PCK@0.1: x86_64 {x86:.3f}, aarch64 {arm:.3f} (difference {abs(x86 - arm):.3f}, allowed {PCK_TOLERANCE})")
    if abs(x86 - arm) > PCK_TOLERANCE:
        problems.append(f"PCK@0.1 differs by {abs(x86 - arm):.3f}")
    for arm_file in sorted(out.glob("arm64-*.jsonl")):
        model = arm_file.stem[len("arm64-"):]
        a, b = by_image(out / f"x86-{model}.jsonl"), by_image(arm_file)
        if sorted(a) != sorted(b):
            problems.append(f"{model}: images differ: {sorted(a)} vs {sorted(b)}")
            continue
        print(f"{model}:")
        for image in sorted(a):
            pa, pb = a[image], b[image]
            if len(pa) != len(pb):
                problems.append(f"{model} {image}: {len(pa)} people on x86_64, {len(pb)} on aarch64")
                print(f"  {image}: {len(pa)} vs {len(pb)} people")
                continue
            px = max((abs(u - v) for p, q in zip(pa, pb) for k, l in zip(p["keypoints"], q["keypoints"])
                      for u, v in zip(k[:2], l[:2])), default=0.0)
            sc = max((abs(k[2] - l[2]) for p, q in zip(pa, pb) for k, l in zip(p["keypoints"], q["keypoints"])),
                     default=0.0)
            print(f"  {image}: {len(pa)} people, keypoints differ by at most {px:.2f} px and {sc:.3f} score")
            if px > PX_TOLERANCE or sc > SCORE_TOLERANCE:
                problems.append(f"{model} {image}: {px:.2f} px / {sc:.3f} score apart")
    return problems


def main() -> int:
    problems = compare(Path(sys.argv[1]))
    if problems:
        print("aarch64 and x86_64 disagree: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"aarch64 agrees with x86_64 (within {PX_TOLERANCE} px, {SCORE_TOLERANCE} score, {PCK_TOLERANCE} PCK)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
