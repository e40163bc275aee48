"""rik plugin: kernels on any host reachable with SSH, through gateway hosts"""

__version__ = "0.1.0"
