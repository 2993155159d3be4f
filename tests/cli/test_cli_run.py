"""LightningCLI runs: subcommands, results, config.yaml, optimizer shortcuts, checkpoints.

Expected metrics were recorded from Lightning 2.6.6 (`lightning.pytorch.cli.LightningCLI`) on the same modules
(tests/helpers/cli_models.py with `import lightning.pytorch as L`) and arguments.
"""

import pytest
import torch
import yaml
from helpers.cli_models import CLIData, CLIModel

from fulmen.cli import LightningCLI, ReduceLROnPlateau, SaveConfigCallback, instantiate_class

QUIET = ["--trainer.max_epochs=2", "--seed_everything=1", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false", "--trainer.logger=false", "--trainer.enable_checkpointing=false"]


def _fit(tmp_path, *extra, **kwargs):
    return LightningCLI(CLIModel, CLIData, args=["fit", *QUIET, f"--trainer.default_root_dir={tmp_path}", *extra],
                        **kwargs)


def _metrics(cli):
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items()}


@pytest.mark.parametrize("extra, expected, scheduler", [
    ([], {"train_loss": 0.239244, "val_loss": 0.656751}, None),
    (["--optimizer=Adam", "--optimizer.lr=0.01"], {"train_loss": 0.911048, "val_loss": 2.231819}, None),
    (["--optimizer=SGD", "--optimizer.lr=0.05", "--lr_scheduler=StepLR", "--lr_scheduler.step_size=1",
      "--lr_scheduler.gamma=0.5"], {"train_loss": 0.571767, "val_loss": 1.63348}, ("StepLR", None)),
    (["--optimizer=Adam", "--lr_scheduler=ReduceLROnPlateau", "--lr_scheduler.monitor=val_loss"],
     {"train_loss": 0.978218, "val_loss": 2.585271}, ("ReduceLROnPlateau", "val_loss")),
])
def test_fit_results_match_lightning(tmp_path, extra, expected, scheduler):
    cli = _fit(tmp_path, *extra)
    assert cli.trainer.current_epoch == 2
    assert _metrics(cli) == pytest.approx(expected, abs=1e-5)
    configs = [(type(c.scheduler).__name__, c.monitor) for c in cli.trainer.lr_scheduler_configs]
    assert configs == ([scheduler] if scheduler else [])
    if scheduler and scheduler[0] == "ReduceLROnPlateau":
        assert isinstance(cli.trainer.lr_scheduler_configs[0].scheduler, ReduceLROnPlateau)


def test_optimizer_shortcut_replaces_configure_optimizers_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="`CLIModel.configure_optimizers` will be overridden by `LightningCLI"):
        cli = LightningCLI(CLIModel, CLIData, run=False, args=["--optimizer=Adam", "--optimizer.lr=0.03"])
    optimizer = cli.model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["lr"] == 0.03
    # Without --optimizer the module keeps its own.
    cli = LightningCLI(CLIModel, CLIData, run=False, args=[])
    assert isinstance(cli.model.configure_optimizers(), torch.optim.SGD)


def test_custom_optimizer_groups_and_links():
    class OwnGroups(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_optimizer_args(torch.optim.Adam)
            parser.add_lr_scheduler_args(torch.optim.lr_scheduler.ExponentialLR)

    cli = OwnGroups(CLIModel, CLIData, run=False, args=["--optimizer.lr=0.2", "--lr_scheduler.gamma=0.9"])
    optimizers, schedulers = cli.model.configure_optimizers()
    assert isinstance(optimizers[0], torch.optim.Adam) and optimizers[0].defaults["lr"] == 0.2
    assert isinstance(schedulers[0], torch.optim.lr_scheduler.ExponentialLR) and schedulers[0].gamma == 0.9

    from helpers.cli_models import LinkedModel

    class Linked(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_optimizer_args(torch.optim.SGD, link_to="model.optimizer_init")

    class TakesOptimizer(LinkedModel):
        def __init__(self, optimizer_init: dict = None, hidden: int = 4):
            super().__init__(hidden=hidden)
            self.optimizer_init = optimizer_init

        def configure_optimizers(self):
            return instantiate_class(self.parameters(), self.optimizer_init)

    cli = Linked(TakesOptimizer, CLIData, run=False, args=["--optimizer.lr=0.3"])
    assert cli.model.optimizer_init["class_path"] == "torch.optim.sgd.SGD"  # the defining module, as Lightning
    optimizer = cli.model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.3


def test_two_automatic_optimizers_is_an_error():
    from fulmen.utilities.exceptions import MisconfigurationException

    class Two(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_optimizer_args(torch.optim.SGD, nested_key="opt1")
            parser.add_optimizer_args(torch.optim.Adam, nested_key="opt2")

    with pytest.raises(MisconfigurationException, match="at most one optimizer"):
        Two(CLIModel, CLIData, run=False, args=[])


def test_config_yaml_saved_in_log_dir_and_not_overwritten(tmp_path):
    args = ["--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}", "--model.hidden=3"]
    cli = _fit(tmp_path, *args)
    path = tmp_path / "lightning_logs" / "version_0" / "config.yaml"
    assert cli.trainer.log_dir == str(path.parent)
    saved = yaml.safe_load(path.read_text())
    assert saved["model"] == {"hidden": 3, "lr": 0.1} and saved["seed_everything"] == 1
    assert saved["trainer"]["logger"]["class_path"] == "fulmen.loggers.CSVLogger"
    assert saved["ckpt_path"] is None and "subcommand" not in saved
    # Same log dir again (version 0 named explicitly): refused, with the ways out.
    again = ["--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}", "--trainer.logger.version=0"]
    with pytest.raises(RuntimeError, match=r"expected .*config.yaml to NOT exist.*save_config_kwargs=\{\"overwrite\""):
        _fit(tmp_path, *again)
    _fit(tmp_path, *again, "--model.hidden=5", save_config_kwargs={"overwrite": True})
    assert yaml.safe_load(path.read_text())["model"]["hidden"] == 5


def test_saved_config_reproduces_the_run(tmp_path):
    first = _fit(tmp_path / "a", "--model.hidden=6", "--optimizer=Adam", "--optimizer.lr=0.02")
    saved = tmp_path / "a" / "config.yaml"  # logger=False: the log dir is default_root_dir
    assert saved.is_file()
    again = LightningCLI(CLIModel, CLIData, args=["fit", "--config", str(saved),
                                                  f"--trainer.default_root_dir={tmp_path / 'b'}"])
    assert _metrics(again) == _metrics(first)
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def test_save_config_callback_options(tmp_path):
    cli = _fit(tmp_path, save_config_callback=None)
    assert not any(isinstance(c, SaveConfigCallback) for c in cli.trainer.callbacks)
    assert not (tmp_path / "config.yaml").exists()
    cli = _fit(tmp_path, save_config_kwargs={"config_filename": "run.yaml"})
    assert (tmp_path / "run.yaml").is_file()
    # fast_dev_run writes nothing.
    cli = LightningCLI(CLIModel, CLIData, args=["fit", "--trainer.fast_dev_run=1",
                                                "--trainer.enable_progress_bar=false",
                                                f"--trainer.default_root_dir={tmp_path / 'f'}"])
    assert not any(isinstance(c, SaveConfigCallback) for c in cli.trainer.callbacks)
    with pytest.raises(ValueError, match="implement `save_config`"):
        SaveConfigCallback(cli.parser, cli.config, save_to_log_dir=False)

    seen = []

    class Elsewhere(SaveConfigCallback):
        def save_config(self, trainer, pl_module, stage):
            seen.append((stage, self.parser.dump(self.config)))

    _fit(tmp_path / "e", save_config_callback=Elsewhere, save_config_kwargs={"save_to_log_dir": False})
    assert not (tmp_path / "e" / "config.yaml").exists()
    assert len(seen) == 1 and seen[0][0] == "fit" and "max_epochs: 2" in seen[0][1]


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluation_subcommands_with_ckpt_path(tmp_path, subcommand):
    fitted = _fit(tmp_path, "--model.hidden=5", "--trainer.enable_checkpointing=true")
    ckpt = fitted.trainer.checkpoint_callback.best_model_path
    # --model.hidden is not given: the checkpoint's hyperparameters become the model config.
    cli = LightningCLI(CLIModel, CLIData, args=[subcommand, f"--ckpt_path={ckpt}", "--trainer.logger=false",
                                                "--trainer.enable_progress_bar=false",
                                                f"--trainer.default_root_dir={tmp_path / subcommand}"])
    assert cli.model.hparams.hidden == 5 and cli.config[subcommand].model.hidden == 5
    if subcommand == "predict":
        return
    key = "val_loss" if subcommand == "validate" else "test_loss"
    for a, b in zip(fitted.model.parameters(), cli.model.parameters()):
        assert torch.equal(a, b)
    # The checkpoint is the last epoch's: the same weights fit's last validation saw.
    assert float(cli.trainer.callback_metrics[key]) == pytest.approx(float(fitted.trainer.callback_metrics["val_loss"]))


def test_load_from_checkpoint_rebuilds_the_cli_module(tmp_path):
    fitted = _fit(tmp_path, "--model.hidden=5", "--trainer.enable_checkpointing=true")
    assert fitted.model.hparams["_instantiator"] == "fulmen.cli.instantiate_module"
    ckpt = fitted.trainer.checkpoint_callback.best_model_path
    loaded = CLIModel.load_from_checkpoint(ckpt)
    assert loaded.hparams.hidden == 5
    for a, b in zip(fitted.model.parameters(), loaded.parameters()):
        assert torch.equal(a, b)
    # A checkpoint naming an untrusted instantiator is refused.
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["_instantiator"] = "os.system"
    torch.save(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="'os.system'.*not among the trusted"):
        CLIModel.load_from_checkpoint(tmp_path / "bad.ckpt")
    # Without load_from_checkpoint_support the module saves its own __init__ arguments.
    plain = _fit(tmp_path / "p", load_from_checkpoint_support=False)
    assert "_instantiator" not in plain.model.hparams


def test_subclass_mode_checkpoint_keeps_the_class_path(tmp_path):
    from helpers.cli_models import WiderModel

    cli = LightningCLI(CLIModel, CLIData, subclass_mode_model=True, args=[
        "fit", "--model=WiderModel", "--model.extra=1", *QUIET, "--trainer.enable_checkpointing=true",
        f"--trainer.default_root_dir={tmp_path}"])
    # As Lightning 2.6.6 (checked on the same module): flat values, the class under `_class_path`.
    assert dict(cli.model.hparams) == {"_class_path": "helpers.cli_models.WiderModel", "extra": 1, "hidden": 4,
                                       "lr": 0.1, "_instantiator": "fulmen.cli.instantiate_module"}
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    loaded = WiderModel.load_from_checkpoint(ckpt)
    assert loaded.extra == 1
    # --ckpt_path restores the hyperparameters (extra=1, not the default 2); the model stays required.
    tested = LightningCLI(CLIModel, CLIData, subclass_mode_model=True, args=[
        "test", "--model=WiderModel", f"--ckpt_path={ckpt}", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path / 't'}"])
    assert type(tested.model) is WiderModel and tested.model.extra == 1


def test_instantiate_class():
    model = torch.nn.Linear(2, 2)
    optimizer = instantiate_class(model.parameters(), {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.4}})
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.4
    scheduler = instantiate_class((optimizer, 3), {"class_path": "torch.optim.lr_scheduler.StepLR"})
    assert scheduler.step_size == 3
    plateau = ReduceLROnPlateau(optimizer, monitor="val_loss", patience=2)
    assert plateau.monitor == "val_loss" and plateau.patience == 2


@pytest.mark.parametrize("multifile", [False, True])
def test_save_config_multifile_keeps_sub_config_files(tmp_path, monkeypatch, multifile):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.yaml").write_text("hidden: 6\n")
    _fit(tmp_path / "out", "--model=model.yaml", save_config_kwargs={"multifile": multifile})
    saved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    if multifile:  # the group stays in its own file, written next to config.yaml
        assert saved["model"] == "model.yaml"
        assert yaml.safe_load((tmp_path / "out" / "model.yaml").read_text()) == {"hidden": 6, "lr": 0.1}
    else:
        assert saved["model"] == {"hidden": 6, "lr": 0.1} and not (tmp_path / "out" / "model.yaml").exists()


def test_printed_config_reproduces_the_trained_result(tmp_path, capsys):
    args = ["--model.hidden=7", "--optimizer=SGD", "--optimizer.lr=0.05", "--lr_scheduler=StepLR",
            "--lr_scheduler.step_size=1"]
    with pytest.raises(SystemExit) as error:
        _fit(tmp_path / "p", *args, "--print_config")
    assert error.value.code == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    direct = _fit(tmp_path / "a", *args)
    replayed = LightningCLI(CLIModel, CLIData, args=["fit", "--config", str(printed),
                                                     f"--trainer.default_root_dir={tmp_path / 'b'}"])
    assert _metrics(replayed) == _metrics(direct)
    for a, b in zip(direct.model.parameters(), replayed.model.parameters()):
        assert torch.equal(a, b)
