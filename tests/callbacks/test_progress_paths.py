"""Lightning's `callbacks.progress` paths, used as a user would."""

import warnings

import fulmen as L
from tests.helpers.tiny import TinyModule, make_loader


def test_progress_paths_are_the_progress_bars(tmp_path, capsys):
    from fulmen.callbacks import ProgressBar, TQDMProgressBar
    from fulmen.callbacks.progress import ProgressBar as progress_ProgressBar
    from fulmen.callbacks.progress import TQDMProgressBar as progress_TQDMProgressBar
    from fulmen.callbacks.progress.progress_bar import ProgressBar as progress_bar_ProgressBar
    from fulmen.callbacks.progress.tqdm_progress import TQDMProgressBar as tqdm_progress_TQDMProgressBar

    assert progress_ProgressBar is ProgressBar is progress_bar_ProgressBar
    assert progress_TQDMProgressBar is TQDMProgressBar is tqdm_progress_TQDMProgressBar

    bar = tqdm_progress_TQDMProgressBar(refresh_rate=1)
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=2, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, callbacks=[bar])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(TinyModule(), make_loader())
    assert trainer.progress_bar_callback is bar
    assert "Epoch 0" in capsys.readouterr().out
