"""rik's LSF emulator (a TEST FIXTURE): the modules behind lib/rik_emulator.py."""
