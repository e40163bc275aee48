"""rik plugin: kernels in Grid Engine interactive jobs (qlogin, qrsh)"""

__version__ = "0.1.0"
