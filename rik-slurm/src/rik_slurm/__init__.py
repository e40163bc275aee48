"""rik plugin: kernels in SLURM interactive jobs (srun)"""

__version__ = "0.1.0"
