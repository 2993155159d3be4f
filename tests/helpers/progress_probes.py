"""Probes for the constructor parameters of the progress bars and model summaries (used by
`tests/test_signatures_components.py`), and the helpers the progress-bar tests share: each probe passes a
non-default value and checks what a user sees."""

import io

from torch import nn

from fulmen.callbacks import RichModelSummary, RichProgressBar, TQDMProgressBar
from fulmen.callbacks.progress.rich_progress import RichProgressBarTheme
from helpers.signature_probes import fit, raises
from helpers.tiny import TinyModule


class LoggingModule(TinyModule):
    """Logs `tl=0.5` and `n=3` to the progress bar each training step."""

    def training_step(self, batch, batch_idx):
        self.log("tl", 0.5, prog_bar=True)
        self.log("n", 3, prog_bar=True)
        return super().training_step(batch, batch_idx)


def rich_console(**extra):
    """Console settings that record into a StringIO (no terminal needed); returns (kwargs, buffer)."""
    buffer = io.StringIO()
    return dict(file=buffer, force_terminal=False, width=160, **extra), buffer


def rich_fit(tmp, module=None, max_epochs=2, **options):
    """Fit with a RichProgressBar drawing into a StringIO; return (bar, text drawn)."""
    import rich

    console_kwargs, buffer = rich_console()
    options.setdefault("console_kwargs", console_kwargs)
    bar = RichProgressBar(**options)
    try:
        fit(tmp, module or LoggingModule(), callbacks=[bar], enable_progress_bar=True, max_epochs=max_epochs)
    finally:
        rich.reconfigure()  # give later code rich's default console back
    return bar, buffer.getvalue()


def rich_summary_text(tmp, module=None, color=False, **options):
    """Fit with a RichModelSummary printing on rich's console, recorded into a StringIO; return the text."""
    import rich

    buffer = io.StringIO()
    rich.reconfigure(file=buffer, force_terminal=color, color_system="truecolor" if color else None, width=160)
    try:
        fit(tmp, module or TinyModule(), callbacks=[RichModelSummary(**options)], enable_model_summary=True)
    finally:
        rich.reconfigure()
    return buffer.getvalue()


class Nested(TinyModule):
    """TinyModule with an extra nested block `block = Sequential(Linear(2, 2))` (unused in forward)."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(2, 2))


# -- TQDMProgressBar ----------------------------------------------------------------------------------------


def tqdm_train_bars(tmp, **options):
    """The training tqdm bars a TQDMProgressBar subclass's `init_train_tqdm` made during a 2-epoch fit."""
    made = []

    class Recording(TQDMProgressBar):
        def init_train_tqdm(self):
            bar = super().init_train_tqdm()
            made.append(bar)
            return bar

    fit(tmp, callbacks=[Recording(**options)], enable_progress_bar=True, max_epochs=2)
    return made


TQDM_PROCESS_POSITION = lambda tmp: {-bar.pos for bar in tqdm_train_bars(tmp, process_position=2)} == {4}  # noqa: E731
# leave=True starts a new bar each epoch (on top of the one made at train start).
TQDM_LEAVE = lambda tmp: len(tqdm_train_bars(tmp, leave=True)) == 3 and len(tqdm_train_bars(tmp)) == 1  # noqa: E731


# -- RichProgressBar ----------------------------------------------------------------------------------------


def _rich_refresh_rate(tmp):
    bar, text = rich_fit(tmp, refresh_rate=0)
    drawn, disabled = bar.progress, text
    bar, _ = rich_fit(tmp, refresh_rate=7)
    return drawn is None and "Epoch" not in disabled and bar.progress.live.refresh_per_second == 7


def _rich_leave(tmp):
    _, kept = rich_fit(tmp, leave=True)
    _, replaced = rich_fit(tmp)
    return "Epoch 0/1" in kept and "Epoch 1/1" in kept and "Epoch 0/1" not in replaced and "Epoch 1/1" in replaced


def _rich_theme(tmp):
    _, text = rich_fit(tmp, theme=RichProgressBarTheme(metrics_format=".1f", metrics_text_delimiter=" | "))
    return "tl: 0.5 | n: 3.0" in text


RICH_PROGRESS_BAR = {
    "refresh_rate": _rich_refresh_rate,
    "leave": _rich_leave,
    "theme": lambda tmp: _rich_theme(tmp) and raises(TypeError, "RichProgressBarTheme",
                                                     lambda: RichProgressBar(theme={"metrics": "red"})),
    "console_kwargs": lambda tmp: "Epoch 1/1" in rich_fit(tmp)[1],
}


# -- RichModelSummary ---------------------------------------------------------------------------------------


RICH_MODEL_SUMMARY = {
    "max_depth": lambda tmp: "block.0" in rich_summary_text(tmp, Nested(), max_depth=2)
    and "block.0" not in rich_summary_text(tmp, Nested())
    and "Trainable params" not in rich_summary_text(tmp, max_depth=0),
    # header_style is rich's style of the header row: bold red is ESC[1;31m.
    "summarize_kwargs": lambda tmp: "\x1b[1;31m" in rich_summary_text(tmp, color=True, header_style="bold red")
    and "\x1b[1;31m" not in rich_summary_text(tmp, color=True)
    and raises(TypeError, "header_style", lambda: RichModelSummary(headerstyle="x")),
}
