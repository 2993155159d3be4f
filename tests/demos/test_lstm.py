"""The LSTM language-model demo; expected losses recorded with Lightning 2.6.6 (same torch, seed, text)."""

import torch

import fulmen as L
from fulmen.demos import LightningLSTM, SequenceSampler, SimpleLSTM
from helpers.language_demo import TEXT, LossRecorder


def test_lightning_lstm_fits_on_a_local_wikitext_file(tmp_path, monkeypatch, offline):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wikitext-2.txt").write_text(TEXT)
    monkeypatch.chdir(tmp_path)
    L.seed_everything(0)
    recorder = LossRecorder()
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder])
    model = LightningLSTM(vocab_size=40)
    trainer.fit(model)
    # 61 blocks in batches of 20 streams: 3 batches an epoch, so the 4th step starts a second
    # epoch from a fresh hidden state (the recorded loss depends on that reset).
    torch.testing.assert_close(torch.tensor(recorder.losses), torch.tensor([3.690277, 3.874469, 33.583519, 15.793985]),
                               rtol=1e-4, atol=1e-4)
    assert model.hidden is None  # reset again when the cut-short second epoch ended
    torch.testing.assert_close(trainer.callback_metrics["train_loss"], torch.tensor(15.793985), rtol=1e-4, atol=1e-4)
    assert offline == []


def test_sequence_sampler_keeps_each_row_a_contiguous_stream():
    sampler = SequenceSampler(list(range(23)), batch_size=4)
    assert len(sampler) == 5
    assert list(sampler) == [[0, 5, 10, 15], [1, 6, 11, 16], [2, 7, 12, 17], [3, 8, 13, 18], [4, 9, 14, 19]]


def test_simple_lstm_shapes_and_hidden_state():
    model = SimpleLSTM(vocab_size=30, ninp=8, nhid=6, nlayers=2, dropout=0.0)
    hidden = model.init_hidden(3)
    assert [h.shape for h in hidden] == [(2, 3, 6), (2, 3, 6)] and all(h.abs().sum() == 0 for h in hidden)
    output, (h, c) = model(torch.randint(0, 30, (3, 5)), hidden)
    assert output.shape == (15, 30) and h.shape == (2, 3, 6) and c.shape == (2, 3, 6)
    torch.testing.assert_close(output.exp().sum(-1), torch.ones(15))
    assert model.decoder.bias.abs().sum() == 0 and model.encoder.weight.abs().max() <= 0.1
