"""The transformer language-model demo: data download/offline error, tokenisation, and a short fit.

Expected losses were recorded with Lightning 2.6.6 running the same script (same torch, seed and text).
"""

from pathlib import Path

import pytest
import torch

import fulmen as L
from fulmen.demos import LightningTransformer, Transformer, WikiText2
from fulmen.demos.transformer import Dictionary, PositionalEncoding, tokenize
from helpers.language_demo import TEXT, LossRecorder

URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/train.txt"


def quiet_trainer(**flags):
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **flags)


def place_text(folder: Path, text: str = TEXT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wikitext-2.txt").write_text(text)
    return folder


def test_lightning_transformer_fits_on_a_local_wikitext_file(tmp_path, monkeypatch, offline):
    place_text(tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # the module reads ./data, as Lightning's does
    L.seed_everything(0)
    recorder = LossRecorder()
    quiet_trainer(max_steps=4, callbacks=[recorder]).fit(LightningTransformer(vocab_size=40))
    torch.testing.assert_close(torch.tensor(recorder.losses), torch.tensor([3.738996, 2.831983, 2.288749, 2.14362]),
                               rtol=1e-4, atol=1e-4)
    assert offline == []  # the file was there: nothing downloaded


def test_wikitext2_items_are_blocks_with_the_target_shifted_by_one(tmp_path):
    dataset = WikiText2(place_text(tmp_path, "a b c\nd e\n"), block_size=2, download=False)
    assert dataset.dictionary.idx2word == ["a", "b", "c", "<eos>", "d", "e"]
    assert dataset.vocab_size == 6
    assert dataset.data.tolist() == [0, 1, 2, 3, 4, 5, 3]
    assert len(dataset) == 7 // 2 - 1
    inputs, target = dataset[1]
    assert inputs.tolist() == [2, 3] and target.tolist() == [3, 4]
    assert dataset.data.dtype == torch.int64


def test_wikitext2_downloads_the_text_into_data_dir(tmp_path, serve):
    files, asked = serve
    files[URL] = TEXT.encode()
    dataset = WikiText2(tmp_path / "fresh", block_size=35)
    assert asked == [URL]
    assert (tmp_path / "fresh" / "wikitext-2.txt").read_text() == TEXT
    assert len(dataset) == len(dataset.data) // 35 - 1
    WikiText2(tmp_path / "fresh")
    assert asked == [URL]  # present now: not fetched again


def test_wikitext2_offline_names_the_url_and_data_dir_and_leaves_no_partial_file(tmp_path, offline):
    with pytest.raises(RuntimeError, match="Could not download") as info:
        WikiText2(tmp_path / "data")
    message = str(info.value)
    assert URL in message and str(tmp_path / "data" / "wikitext-2.txt") in message and "data_dir" in message
    assert offline == [URL]
    assert list((tmp_path / "data").iterdir()) == []


def test_wikitext2_without_download_and_without_the_file_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        WikiText2(tmp_path, download=False)


def test_tokenize_and_dictionary(tmp_path):
    path = place_text(tmp_path, "x y x\n\ny\n") / "wikitext-2.txt"
    ids, dictionary = tokenize(path)
    assert ids.tolist() == [0, 1, 0, 2, 2, 1, 2]
    assert isinstance(dictionary, Dictionary) and len(dictionary) == 3
    assert dictionary.word2idx == {"x": 0, "y": 1, "<eos>": 2}
    assert dictionary.add_word("y") == 1 and dictionary.add_word("z") == 3


def test_transformer_shapes_and_causal_mask():
    torch.manual_seed(0)
    model = Transformer(vocab_size=50, ninp=16, nhead=2, nhid=16, nlayers=1, dropout=0.0)
    inputs, target = torch.randint(0, 50, (2, 7)), torch.randint(0, 50, (2, 7))
    output = model(inputs, target)
    assert output.shape == (14, 50)
    torch.testing.assert_close(output.exp().sum(-1), torch.ones(14))  # log-probabilities
    mask = model.generate_square_subsequent_mask(3)
    assert mask.tolist() == [[0.0, float("-inf"), float("-inf")], [0.0, 0.0, float("-inf")], [0.0, 0.0, 0.0]]
    # A later target token cannot change earlier outputs.
    changed = target.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 50
    torch.testing.assert_close(model(inputs, changed).view(2, 7, 50)[:, :-1], output.view(2, 7, 50)[:, :-1])
    # Same parameter names as Lightning's demo, so its checkpoints load.
    assert {"embedding.weight", "decoder.weight", "decoder.bias"} <= set(model.state_dict())


def test_positional_encoding_is_sinusoidal_and_not_saved():
    encoding = PositionalEncoding(4, dropout=0.0, max_len=10)
    out = encoding(torch.zeros(1, 3, 4))
    # Lightning quirk kept: every position gets the encoding of index seq_len (3).
    expected = torch.tensor([torch.sin(torch.tensor(3.0)), torch.cos(torch.tensor(3.0)),
                             torch.sin(torch.tensor(3.0 / 100)), torch.cos(torch.tensor(3.0 / 100))])
    torch.testing.assert_close(out[0], expected.expand(3, 4))
    assert list(encoding.state_dict()) == []
