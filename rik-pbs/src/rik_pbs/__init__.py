"""rik plugin: kernels in PBS interactive jobs (qsub -I; Torque, OpenPBS, PBS Pro)"""

__version__ = "0.1.0"
