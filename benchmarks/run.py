"""rik's benchmarks: ``python benchmarks/run.py [--quick] [--only KEYS] [--skip PARTS]`` (``--help`` for all).

The code is the ``rikbench`` package next to this file; the method is in ``benchmarks/README.md``.
"""

import sys

from rikbench.main import main

if __name__ == "__main__":
    sys.exit(main())
