"""rik's benchmarks: what users feel, each figure against its own floor measured in the same interleaved run.

``python benchmarks/run.py [--quick]`` (or ``nox -s bench``); the method is in ``benchmarks/README.md``, the targets
in ``benchmarks/targets.toml``, the results in ``benchmarks/results/``.
"""
