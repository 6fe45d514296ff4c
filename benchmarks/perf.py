"""attnlab vs plain PyTorch, as ratios measured side by side in one run.

    python benchmarks/perf.py [--quick] [--only SECTION ...] [--out DIR] [--no-mlflow]

The same as ``attnlab bench perf``; the code lives in attnlab.bench.perf (references in
attnlab.bench.references, the bare training loop in attnlab.bench.bare_loop).
"""

import sys

from attnlab.bench.perf import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
