"""What the language-model demo tests share: a small repetitive text and a callback recording training losses."""

import fulmen as L

TEXT = "".join(f"the cat {i % 7} sat on the mat number {i % 5} .\n" for i in range(200))


class LossRecorder(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
