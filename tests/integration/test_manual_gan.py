"""Manual optimization: a tiny GAN with two optimizers trains exactly like the same hand-written loop."""

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L

EPOCHS, LATENT = 2, 3


def _real_data():
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(32, 2, generator=generator) * 0.5 + 2.0)


def _nets():
    torch.manual_seed(11)
    gen = nn.Sequential(nn.Linear(LATENT, 8), nn.ReLU(), nn.Linear(8, 2))
    disc = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    return gen, disc


def _gan_step(gen, disc, real, noise, backward, step_d, step_g, zero_d, zero_g):
    fake = gen(noise)
    # discriminator: real -> 1, fake -> 0 (generator frozen by detach)
    d_loss = F.binary_cross_entropy_with_logits(disc(real), torch.ones(len(real), 1)) + \
        F.binary_cross_entropy_with_logits(disc(fake.detach()), torch.zeros(len(real), 1))
    zero_d()
    backward(d_loss)
    step_d()
    # generator: make the discriminator say 1
    g_loss = F.binary_cross_entropy_with_logits(disc(fake), torch.ones(len(real), 1))
    zero_g()
    backward(g_loss)
    step_g()
    return d_loss, g_loss


class GAN(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.gen, self.disc = _nets()
        self.toggled = []

    def training_step(self, batch, batch_idx):
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        noise = torch.randn(len(real), LATENT, generator=self.noise)

        def step_d():
            opt_d.step()

        def step_g():
            self.toggle_optimizer(opt_g)
            self.toggled.append(all(not p.requires_grad for p in self.disc.parameters()))
            opt_g.step()
            self.untoggle_optimizer(opt_g)

        d_loss, g_loss = _gan_step(self.gen, self.disc, real, noise, self.manual_backward, step_d, step_g,
                                   opt_d.zero_grad, opt_g.zero_grad)
        self.log_dict({"d_loss": d_loss, "g_loss": g_loss}, prog_bar=True)

    def on_train_start(self):
        self.noise = torch.Generator().manual_seed(5)

    def configure_optimizers(self):
        return [torch.optim.Adam(self.gen.parameters(), lr=1e-2), torch.optim.SGD(self.disc.parameters(), lr=1e-2)]


def test_two_optimizer_gan_matches_hand_written_loop_and_counts_both_steps(tmp_path):
    data = _real_data()
    model = GAN()
    trainer = L.Trainer(max_epochs=EPOCHS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(data, batch_size=8))
    batches = EPOCHS * 4
    assert trainer.global_step == 2 * batches  # manual optimization counts every optimizer step
    assert all(model.toggled) and len(model.toggled) == batches
    assert all(p.requires_grad for p in model.parameters())  # untoggle restored everything
    assert {"d_loss", "g_loss"} <= set(trainer.callback_metrics)

    gen, disc = _nets()
    opt_g, opt_d = torch.optim.Adam(gen.parameters(), lr=1e-2), torch.optim.SGD(disc.parameters(), lr=1e-2)
    noise_source = torch.Generator().manual_seed(5)
    for _ in range(EPOCHS):
        for (real,) in DataLoader(data, batch_size=8):
            noise = torch.randn(len(real), LATENT, generator=noise_source)
            _gan_step(gen, disc, real, noise, torch.Tensor.backward, opt_d.step, opt_g.step, opt_d.zero_grad,
                      opt_g.zero_grad)
    for ours, theirs in zip(list(model.gen.parameters()) + list(model.disc.parameters()),
                            list(gen.parameters()) + list(disc.parameters())):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
