"""Shared test setup: one torch thread per test process.

On a 2-core machine that also runs other work, torch's default of one thread per core thrashes
(a tiny decode measured 3.6 ms with 1 thread and 384 ms with 2); tests are small, so one thread
is also the fastest on a quiet machine.
"""
import torch

torch.set_num_threads(1)
