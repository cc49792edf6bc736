"""The pure core of streamproc: no I/O, no clock, no randomness; time and chance are arguments."""
