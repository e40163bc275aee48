"""rik-htcondor: an example third-party rik plugin for HTCondor's ``condor_submit -interactive``."""

__version__ = "0.1.0"
