"""Per-layer time and memory of self-attention, recurrence and convolution (notes §9.3-9.4).

    python benchmarks/complexity.py [--quick] [--out DIR] [--device cpu|cuda] [--no-mlflow]

The same as ``attnlab bench complexity``; the code lives in attnlab.bench.complexity.
"""

import sys

from attnlab.bench.complexity import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
