"""ModelCheckpoint: where checkpoints go, their names, which files are kept, best/last bookkeeping, and
`ckpt_path="best"/"last"` in fit/validate/test/predict.

Expected file names, kept files and best/last paths were observed with Lightning 2.6.6 on the same
schedules (4 epochs of 4 batches, a scripted validation metric per epoch).
"""

import os

import pytest
import torch

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from fulmen.loggers import CSVLogger
from fulmen.utilities.exceptions import MisconfigurationException
from helpers.tiny import TinyModule, make_loader, quiet_trainer

SCORES = (0.5, 0.4, 0.45, 0.3)  # val_loss per epoch: improves at epochs 0, 1 and 3


class ScoredModule(TinyModule):
    """Logs a scripted validation metric: `scores[current_epoch]` under `name`."""

    def __init__(self, scores=SCORES, name="val_loss"):
        super().__init__()
        self.scores = scores
        self.name = name

    def validation_step(self, batch, batch_idx):
        self.log(self.name, float(self.scores[min(self.current_epoch, len(self.scores) - 1)]))


def fit(tmp_path, callbacks=(), model=None, max_epochs=4, **flags):
    flags = {"enable_checkpointing": True, "num_sanity_val_steps": 0, **flags}
    trainer = quiet_trainer(tmp_path, callbacks=list(callbacks), max_epochs=max_epochs, **flags)
    trainer.fit(model or ScoredModule(), make_loader(32), make_loader(32))  # 4 batches per epoch
    return trainer


def listing(directory):
    """Paths of all files (and links) under `directory`, relative to it; links are marked with '@'."""
    found = []
    for parent, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(parent, name)
            found.append(os.path.relpath(path, directory) + ("@" if os.path.islink(path) else ""))
    return sorted(found)


def rel(path, directory):
    return os.path.relpath(path, directory) if path else path


# -- where and under which name ----------------------------------------------------------------------


@pytest.mark.parametrize("logger", ["tensorboard", "csv"])
def test_default_dirpath_with_a_logger_is_the_version_directory(tmp_path, logger):
    if logger == "tensorboard":
        pytest.importorskip("tensorboard")
    chosen = True if logger == "tensorboard" else CSVLogger(tmp_path)
    trainer = fit(tmp_path, max_epochs=2, logger=chosen)
    expected = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "epoch=1-step=8.ckpt"
    assert trainer.checkpoint_callback.best_model_path == str(expected)
    assert [path for path in listing(tmp_path) if path.endswith(".ckpt")] == [str(expected.relative_to(tmp_path))]


def test_default_dirpath_without_a_logger(tmp_path):
    trainer = fit(tmp_path, max_epochs=2)  # the default ModelCheckpoint from enable_checkpointing=True
    assert listing(tmp_path) == ["checkpoints/epoch=1-step=8.ckpt"]
    assert trainer.checkpoint_callback.best_model_path == str(tmp_path / "checkpoints" / "epoch=1-step=8.ckpt")


@pytest.mark.parametrize("template, auto_insert, metric, expected", [
    ("{epoch}-{val_loss:.2f}", True, "val_loss", "epoch=3-val_loss=0.30.ckpt"),
    ("e{epoch}-{val_loss:.2f}", False, "val_loss", "e3-0.30.ckpt"),
    ("{epoch}-{val/loss:.2f}", True, "val/loss", "epoch=3-val/loss=0.30.ckpt"),  # the '/' makes a subdirectory
    ("{epoch}-{val/loss:.2f}", False, "val/loss", "3-0.30.ckpt"),
    ("{step:03d}", True, "val_loss", "step=016.ckpt"),
])
def test_filename_templates(tmp_path, template, auto_insert, metric, expected):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename=template, monitor=metric,
                               auto_insert_metric_name=auto_insert)
    fit(tmp_path, [callback], model=ScoredModule(name=metric))
    assert listing(tmp_path / "ckpts") == [expected]
    assert rel(callback.best_model_path, tmp_path / "ckpts") == expected


def test_version_counter_on_a_name_clash(tmp_path):
    directory = tmp_path / "ckpts"
    for _ in range(2):
        callback = ModelCheckpoint(dirpath=directory, save_last=True)
        fit(tmp_path, [callback], max_epochs=1)
    assert listing(directory) == ["epoch=0-step=4-v1.ckpt", "epoch=0-step=4.ckpt", "last-v1.ckpt", "last.ckpt"]
    assert os.path.basename(callback.best_model_path) == "epoch=0-step=4-v1.ckpt"
    assert os.path.basename(callback.last_model_path) == "last-v1.ckpt"


def test_without_version_counter_a_clash_overwrites(tmp_path):
    directory = tmp_path / "ckpts"
    for _ in range(2):
        fit(tmp_path, [ModelCheckpoint(dirpath=directory, enable_version_counter=False)], max_epochs=1)
    assert listing(directory) == ["epoch=0-step=4.ckpt"]


# -- which files are kept ----------------------------------------------------------------------------


@pytest.mark.parametrize("top_k, mode, kept, best, best_score", [
    (0, "min", [], "", None),
    (1, "min", ["epoch=3-step=16.ckpt"], "epoch=3-step=16.ckpt", 0.3),
    (2, "min", ["epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt"], "epoch=3-step=16.ckpt", 0.3),
    (-1, "min", ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "epoch=2-step=12.ckpt", "epoch=3-step=16.ckpt"],
     "epoch=3-step=16.ckpt", 0.3),
    (2, "max", ["epoch=0-step=4.ckpt", "epoch=2-step=12.ckpt"], "epoch=0-step=4.ckpt", 0.5),
])
def test_save_top_k_keeps_the_best_files(tmp_path, top_k, mode, kept, best, best_score):
    directory = tmp_path / "ckpts"
    callback = ModelCheckpoint(dirpath=directory, monitor="val_loss", save_top_k=top_k, mode=mode)
    fit(tmp_path, [callback])
    assert listing(directory) == kept
    assert sorted(rel(path, directory) for path in callback.best_k_models) == kept
    assert rel(callback.best_model_path, directory) == best
    if best_score is None:
        assert callback.best_model_score is None
    else:
        assert callback.best_model_score.item() == pytest.approx(best_score)
        assert callback.best_k_models[callback.best_model_path].item() == pytest.approx(best_score)
    assert callback.last_model_path == ""


def test_without_monitor_best_is_the_latest_and_last_is_empty(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts")
    fit(tmp_path, [callback])
    assert listing(tmp_path / "ckpts") == ["epoch=3-step=16.ckpt"]
    assert callback.best_model_path == str(tmp_path / "ckpts" / "epoch=3-step=16.ckpt")
    assert callback.best_model_score is None
    assert callback.last_model_path == ""


def test_save_last_writes_last_ckpt(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", save_last=True)
    fit(tmp_path, [callback])
    assert listing(tmp_path / "ckpts") == ["epoch=3-step=16.ckpt", "last.ckpt"]
    assert callback.last_model_path == str(tmp_path / "ckpts" / "last.ckpt")
    assert torch.load(callback.last_model_path, weights_only=True)["global_step"] == 16


@pytest.mark.parametrize("top_k, expected", [(1, (1, 8)), (0, (4, 16))])
def test_save_last_follows_the_latest_top_k_save(tmp_path, top_k, expected):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", save_top_k=top_k, save_last=True)
    fit(tmp_path, [callback], model=ScoredModule(scores=(0.5, 0.1, 0.4, 0.3)))
    checkpoint = torch.load(callback.last_model_path, weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == expected


@pytest.mark.parametrize("monitor", ["val_loss", None])
def test_save_last_link_points_at_the_latest_top_k_file(tmp_path, monitor):
    directory = tmp_path / "ckpts"
    callback = ModelCheckpoint(dirpath=directory, monitor=monitor, save_last="link")
    fit(tmp_path, [callback], model=ScoredModule(scores=(0.5, 0.1, 0.4, 0.3)))
    best = "epoch=1-step=8.ckpt" if monitor else "epoch=3-step=16.ckpt"
    assert listing(directory) == [best, "last.ckpt@"]
    assert os.readlink(directory / "last.ckpt") == best
    assert callback.last_model_path == str(directory / "last.ckpt")


def test_save_last_link_copies_where_no_symlink_can_be_made(tmp_path, monkeypatch):
    def no_symlinks(*args, **kwargs):
        raise OSError("symbolic links are not permitted here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    directory = tmp_path / "ckpts"
    callback = ModelCheckpoint(dirpath=directory, monitor="val_loss", save_last="link")
    fit(tmp_path, [callback], model=ScoredModule(scores=(0.5, 0.1, 0.4, 0.3)))
    assert listing(directory) == ["epoch=1-step=8.ckpt", "last.ckpt"]  # a copy of the best, as Lightning falls back
    last = torch.load(directory / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 8)


def test_save_last_with_top_k_zero_keeps_only_last(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=0, save_last=True)
    fit(tmp_path, [callback])
    assert listing(tmp_path / "ckpts") == ["last.ckpt"]
    assert callback.best_model_path == ""


# -- when -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, flags, expected", [
    (dict(every_n_epochs=2), {}, ["epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt"]),
    (dict(every_n_train_steps=3), {}, ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt", "epoch=2-step=12.ckpt",
                                       "epoch=2-step=9.ckpt", "epoch=3-step=15.ckpt"]),
    ({}, dict(val_check_interval=2, max_epochs=1), ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt"]),
    ({}, dict(check_val_every_n_epoch=2), ["epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt"]),
    (dict(save_on_train_epoch_end=True), dict(check_val_every_n_epoch=2),
     ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "epoch=2-step=12.ckpt", "epoch=3-step=16.ckpt"]),
    ({}, dict(max_steps=6), ["epoch=0-step=4.ckpt", "epoch=1-step=6.ckpt"]),
], ids=["every_n_epochs", "every_n_train_steps", "val_check_interval", "check_val_every_n_epoch",
        "save_on_train_epoch_end", "max_steps"])
def test_save_schedule(tmp_path, options, flags, expected):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1, **options)
    fit(tmp_path, [callback], **flags)
    assert listing(tmp_path / "ckpts") == expected


def test_every_n_train_steps_with_top_k_1_keeps_the_latest(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=3)
    fit(tmp_path, [callback])
    assert listing(tmp_path / "ckpts") == ["epoch=3-step=15.ckpt"]


def test_save_weights_only_has_no_optimizer_state(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_weights_only=True)
    fit(tmp_path, [callback], max_epochs=1)
    checkpoint = torch.load(callback.best_model_path, weights_only=True)
    assert "optimizer_states" not in checkpoint and "lr_schedulers" not in checkpoint
    assert {"state_dict", "epoch", "global_step"} <= set(checkpoint)


def test_missing_monitor_raises_after_validation(tmp_path):
    with pytest.raises(MisconfigurationException, match="monitor='nope'.*val_loss"):
        fit(tmp_path, [ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="nope")])


def test_missing_monitor_without_validation_warns_and_saves_nothing(tmp_path):
    with pytest.warns(UserWarning, match="nope"):
        fit(tmp_path, [ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="nope")], limit_val_batches=0)
    assert listing(tmp_path) == []


# -- ckpt_path="best" / "last" / a path --------------------------------------------------------------------


@pytest.fixture
def best_and_last(tmp_path):
    """A fit whose best epoch (1) differs from its last (3); returns trainer, model, and the two state dicts."""
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", save_top_k=-1, save_last=True)
    model = ScoredModule(scores=(0.5, 0.1, 0.4, 0.3))
    trainer = fit(tmp_path, [callback], model=model)
    assert os.path.basename(callback.best_model_path) == "epoch=1-step=8.ckpt"
    best = torch.load(callback.best_model_path, weights_only=True)["state_dict"]
    last = torch.load(callback.last_model_path, weights_only=True)["state_dict"]
    assert not torch.equal(best["layer.weight"], last["layer.weight"])
    return trainer, model, best, last


def _weights_equal(model, state_dict):
    return all(torch.equal(value, state_dict[key]) for key, value in model.state_dict().items())


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
@pytest.mark.parametrize("which", ["best", "last", "path"])
def test_ckpt_path_loads_the_chosen_weights(best_and_last, tmp_path, stage, which):
    trainer, model, best, last = best_and_last
    path = str(tmp_path / "ckpts" / "epoch=2-step=12.ckpt")
    expected = {"best": best, "last": last, "path": torch.load(path, weights_only=True)["state_dict"]}[which]
    loader = make_loader(32, targets=stage != "predict")
    getattr(trainer, stage)(model, loader, ckpt_path=path if which == "path" else which)
    assert _weights_equal(model, expected)
    chosen = {"best": trainer.checkpoint_callback.best_model_path,
              "last": trainer.checkpoint_callback.last_model_path, "path": path}[which]
    assert trainer.ckpt_path == chosen


def test_validate_without_a_model_after_fit_uses_best_with_a_warning(best_and_last):
    trainer, model, best, _ = best_and_last
    with pytest.warns(UserWarning, match=r"ckpt_path=None.*best"):
        trainer.validate(dataloaders=make_loader(32))
    assert trainer.ckpt_path == trainer.checkpoint_callback.best_model_path
    assert _weights_equal(model, best)


def test_fit_with_ckpt_path_last_continues_training(best_and_last, tmp_path):
    trainer, _, _, _ = best_and_last
    model = ScoredModule()
    resumed = quiet_trainer(tmp_path / "resumed", max_epochs=5, num_sanity_val_steps=0)
    resumed.fit(model, make_loader(32), make_loader(32), ckpt_path=trainer.checkpoint_callback.last_model_path)
    assert resumed.global_step == 20
    assert model.calls["training_step"] == 4  # only epoch 4 was left


def test_ckpt_path_best_without_model_checkpoint_raises(tmp_path):
    trainer = fit(tmp_path, max_epochs=1, enable_checkpointing=False)
    with pytest.raises(ValueError, match="ModelCheckpoint"):
        trainer.validate(trainer.lightning_module, make_loader(32), ckpt_path="best")


def test_ckpt_path_last_without_a_last_checkpoint_warns_and_uses_the_model(tmp_path):
    trainer = fit(tmp_path, max_epochs=1, enable_checkpointing=False)
    before = {key: value.clone() for key, value in trainer.lightning_module.state_dict().items()}
    with pytest.warns(UserWarning, match="last"):
        trainer.validate(trainer.lightning_module, make_loader(32), ckpt_path="last")
    assert _weights_equal(trainer.lightning_module, before)


def test_ckpt_path_last_in_a_new_trainer_finds_last_ckpt_on_disk(best_and_last, tmp_path):
    # A re-queued job: a fresh Trainer whose ModelCheckpoint writes to the same directory (Lightning 2.6.6
    # looks for `last*.ckpt` files there too).
    model = ScoredModule()
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)
    resumed = quiet_trainer(tmp_path / "resumed", callbacks=[callback], max_epochs=5, enable_checkpointing=True,
                            num_sanity_val_steps=0)
    resumed.fit(model, make_loader(32), make_loader(32), ckpt_path="last")
    assert resumed.ckpt_path == str(tmp_path / "ckpts" / "last.ckpt")
    assert resumed.global_step == 20 and model.calls["training_step"] == 4


@pytest.mark.parametrize(("arguments", "message"), [  # Lightning's words (tests match them), then the fix
    (dict(save_top_k=-3), r"Invalid value for save_top_k=-3\. Must be >= -1"),
    (dict(every_n_epochs=-1), r"Invalid value for every_n_epochs=-1\. Must be >= 0"),
    (dict(every_n_train_steps=-2), r"Invalid value for every_n_train_steps=-2\. Must be >= 0"),
    (dict(every_n_epochs=2, every_n_train_steps=3), r"Combination of parameters every_n_train_steps=3, "
                                                    r"every_n_epochs=2 and train_time_interval=None should be mutually "
                                                    r"exclusive: set only one"),
    (dict(save_top_k=3), r"ModelCheckpoint\(save_top_k=3, monitor=None\) is not a valid configuration\. No quantity "
                         r"for top_k to track: set `monitor`"),
    (dict(mode="unknown_option"), r"`mode` can be min, max but got unknown_option: pass `ModelCheckpoint\(mode=...\)`"),
    (dict(save_last="sometimes"), r"`save_last='sometimes'` is invalid; use True, False or 'link'"),
])
def test_invalid_arguments_raise_with_lightnings_words(arguments, message):
    with pytest.raises(MisconfigurationException, match=message):
        ModelCheckpoint(**arguments)


def test_a_model_checkpoint_with_checkpointing_disabled_raises(tmp_path):
    with pytest.raises(MisconfigurationException, match="Trainer was configured with `enable_checkpointing=False` but "
                                                         "found `ModelCheckpoint` in callbacks list; remove"):
        L.Trainer(default_root_dir=tmp_path, enable_checkpointing=False, callbacks=[ModelCheckpoint()])


def test_an_empty_dirpath_saves_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    callback = ModelCheckpoint(dirpath="")
    assert callback.dirpath == "" and callback.format_checkpoint_name({"epoch": 5, "step": 4}) == "epoch=5-step=4.ckpt"
    fit(tmp_path / "root", [callback], max_epochs=1)
    assert callback.dirpath == "" and callback.best_model_path == "epoch=0-step=4.ckpt"  # as Lightning
    assert (tmp_path / "epoch=0-step=4.ckpt").is_file()
