"""Run every benchmark in sequence (``make bench``); each prints its own Markdown table.

The figures in BENCHMARKS.md come from these commands; each section there names
the exact command.  Scripts run one at a time (the machine has 2 cores), each
as its own process so one failing does not hide the others' results.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS: list[list[str]] = [
    ["onnx_vs_tf.py", "--reps", "9"],
    ["training_peers.py", "--reps", "7"],
    ["ingest.py"],
    ["peer_flower.py"],
    ["e2e_round.py", "--sdk", str(HERE.parent / "out" / "bench" / "propensity")],
    ["poisoning.py"],
]


def main() -> int:
    failed = []
    for args in SCRIPTS:
        print(f"\n==== bench/{' '.join(args)}", flush=True)
        rc = subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]], cwd=HERE.parent).returncode
        if rc != 0:
            failed.append(args[0])
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
