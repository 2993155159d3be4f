"""A module that compiles its layer in `configure_model`, importable by spawned ranks (tests/core/test_compile.py)."""

import torch

from helpers.tiny import TinyModule


class CompilesLayer(TinyModule):
    def configure_model(self):
        if not isinstance(self.layer, torch._dynamo.OptimizedModule):
            self.layer = torch.compile(self.layer, backend="eager")
