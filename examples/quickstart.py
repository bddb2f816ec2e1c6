"""Quickstart: fingerprint a digits classifier, then check an exact copy, a fine-tuned copy and an independent model."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from fp_registry.demo import run_local_demo


def main(registry: str) -> int:
    for row in run_local_demo(Path(registry)):
        print(f"{row['suspect']:40s} verdict={row['verdict']:6s} score={row['score']:.3f} "
              f"threshold={row['threshold']:.3f} p={row['p_value']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fp-registry-")))
