"""A small transformer language model trained on WikiText-2 (Lightning's `demos.transformer`).

The model, tokenisation and file layout match Lightning 2.6's demo, so its checkpoints and data folder work
here. The text is downloaded once into `data_dir/wikitext-2.txt`; offline, place that file there yourself.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from fulmen.core.module import LightningModule
from fulmen.demos._download import download_file

__all__ = ["Dictionary", "LightningTransformer", "PositionalEncoding", "Transformer", "WikiText2", "tokenize"]

WIKITEXT2_URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/train.txt"
WIKITEXT2_FILE_NAME = "wikitext-2.txt"


class Transformer(nn.Module):
    """Encoder-decoder `nn.Transformer` over word embeddings; returns log-probabilities of shape
    `(batch * seq_len, vocab_size)`."""

    def __init__(self, vocab_size: int = 33278, ninp: int = 200, nhead: int = 2, nhid: int = 200,
                 nlayers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        # Attribute names match Lightning's demo so state dicts load across the two.
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        self.embedding = nn.Embedding(vocab_size, ninp)
        self.transformer = nn.Transformer(d_model=ninp, nhead=nhead, num_encoder_layers=nlayers,
                                          num_decoder_layers=nlayers, dim_feedforward=nhid, dropout=dropout,
                                          batch_first=True)
        self.decoder = nn.Linear(ninp, vocab_size)
        self.ninp = ninp
        self.vocab_size = vocab_size
        self.src_mask: Tensor | None = None

    def generate_square_subsequent_mask(self, size: int) -> Tensor:
        """A `(size, size)` float mask: 0 on and below the diagonal, -inf above (no peeking at later tokens)."""
        return torch.full((size, size), float("-inf")).triu(diagonal=1)

    def forward(self, inputs: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        length = inputs.shape[1]
        # Lightning quirk: a causal source mask is built and kept in `src_mask` but not passed to the encoder.
        if self.src_mask is None or self.src_mask.size(0) != length:
            self.src_mask = self.generate_square_subsequent_mask(length).to(inputs.device)
        if mask is None:
            mask = self.generate_square_subsequent_mask(length).to(inputs.device)
        scale = math.sqrt(self.ninp)
        source = self.pos_encoder(self.embedding(inputs) * scale)
        target = self.pos_encoder(self.embedding(target) * scale)
        output = self.decoder(self.transformer(source, target, tgt_mask=mask))
        return F.log_softmax(output, dim=-1).view(-1, self.vocab_size)


class PositionalEncoding(nn.Module):
    """Adds a sinusoidal position encoding (built lazily on the input's device) and applies dropout."""

    def __init__(self, dim: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.dim = dim
        self.max_len = max_len
        # Not a buffer or parameter: it stays out of the state dict (as in Lightning) and out of DDP's buckets.
        self.pe: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.pe is None:
            self.pe = self._encoding_table(x.device)
        # Lightning quirk: every position gets the encoding of index `seq_len` (`pe[:, x.size(1)]`), not its own.
        return self.dropout(x + self.pe[:, x.size(1)])

    def _encoding_table(self, device: torch.device) -> Tensor:
        position = torch.arange(self.max_len, dtype=torch.float, device=device).unsqueeze(1)
        frequency = torch.exp(torch.arange(0, self.dim, 2, device=device).float() * (-math.log(10000.0) / self.dim))
        table = torch.zeros(self.max_len, self.dim, device=device)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        return table.unsqueeze(0)


class WikiText2(Dataset):
    """WikiText-2's training text as `(inputs, target)` blocks of `block_size` token ids, target shifted by one.

    The text lives in `data_dir/wikitext-2.txt`; with `download=True` it is fetched there first if absent.
    """

    def __init__(self, data_dir: Path = Path("./data"), block_size: int = 35, download: bool = True) -> None:
        super().__init__()
        self.path = Path(data_dir) / WIKITEXT2_FILE_NAME
        if download:
            self.download(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"WikiText-2 text not found at {self.path}. Pass `download=True` to fetch it from {WIKITEXT2_URL}, "
                "or place that file there (or point `data_dir` at the folder holding it).")
        self.data, self.dictionary = tokenize(self.path)
        self.block_size = block_size

    @property
    def vocab_size(self) -> int:
        return len(self.dictionary)

    def __len__(self) -> int:
        # One block is held back so the last block's shifted target stays inside the text.
        return len(self.data) // self.block_size - 1

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        start = index * self.block_size
        return self.data[start:start + self.block_size], self.data[start + 1:start + self.block_size + 1]

    @staticmethod
    def download(destination: Path) -> None:
        """Fetch WikiText-2's training text to `destination`, unless it is there already."""
        if os.path.exists(destination):
            return
        download_file(WIKITEXT2_URL, destination, "the folder is `WikiText2(data_dir=...)`")


class Dictionary:
    """A growing word <-> id mapping: `word2idx` and `idx2word`."""

    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        """The id of `word`, giving it the next free id if it is new."""
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)


def tokenize(path: Path) -> tuple[Tensor, Dictionary]:
    """Split the text file at `path` on whitespace, ending each line with `<eos>`; return all token ids (int64)
    in order and the dictionary built from them."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Cannot tokenize {os.fspath(path)}: no such file.")
    dictionary = Dictionary()
    with open(path, encoding="utf8") as file:
        ids = [dictionary.add_word(word) for line in file for word in [*line.split(), "<eos>"]]
    return torch.tensor(ids, dtype=torch.int64), dictionary


class LightningTransformer(LightningModule):
    """`Transformer` trained as a language model on `WikiText2` (data in `./data`) with SGD (lr 0.1)."""

    def __init__(self, vocab_size: int = 33278) -> None:
        super().__init__()
        self.model = Transformer(vocab_size=vocab_size)

    def forward(self, inputs: Tensor, target: Tensor) -> Tensor:
        return self.model(inputs, target)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        inputs, target = batch
        return F.nll_loss(self(inputs, target), target.view(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=0.1)

    def prepare_data(self) -> None:
        WikiText2(download=True)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(WikiText2())
