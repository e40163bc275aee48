"""rik plugin: kernels in LSF interactive jobs (bsub -Is)"""

__version__ = "0.1.0"
