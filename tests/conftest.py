"""Shared test setup: one torch thread per test process.

On a 2-core machine that also runs other work, torch's default of one thread per core thrashes
(DEVELOPERS.md); the tests' tensors are small, so one thread is also the fastest on a quiet one.
"""

import torch

torch.set_num_threads(1)
