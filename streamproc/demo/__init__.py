"""The demo and its tools: a sample generator, a live end-to-end run, and a decisions tail.

``streamproc demo`` runs broker checks, the Control Room emulator, the processor, the sample
generator and an end-to-end check together with a live view; ``streamproc produce-sample``
produces sample transactions; ``streamproc tail`` follows the decisions or dead letters.
"""
