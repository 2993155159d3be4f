"""LightningCLI parsing: arguments, config files, env vars, subclass mode, errors (no training run needed)."""

import sys

import pytest
import yaml
from helpers.cli_models import CLIData, CLIModel, WiderModel

import fulmen as L
from fulmen.callbacks import EarlyStopping, ModelCheckpoint
from fulmen.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from fulmen.loggers import CSVLogger


def test_run_false_builds_model_data_and_trainer_from_arguments():
    cli = LightningCLI(CLIModel, CLIData, run=False, args=[
        "--model.hidden=7", "--model.lr=0.5", "--data.batch_size=2", "--trainer.max_epochs=3",
        "--seed_everything=5"])
    assert isinstance(cli.model, CLIModel) and cli.model.hparams.hidden == 7 and cli.model.hparams.lr == 0.5
    assert isinstance(cli.datamodule, CLIData) and cli.datamodule.batch_size == 2
    assert isinstance(cli.trainer, L.Trainer) and cli.trainer.max_epochs == 3
    assert cli.subcommand is None
    assert cli.config.model.hidden == 7 and cli.config.seed_everything == 5
    assert cli.config_init.model is cli.model
    # The config saver is one of the trainer's callbacks.
    assert any(isinstance(c, SaveConfigCallback) for c in cli.trainer.callbacks)


def test_args_as_dict():
    cli = LightningCLI(CLIModel, CLIData, run=False,
                       args={"model": {"hidden": 9}, "trainer": {"max_steps": 4}, "seed_everything": False})
    assert cli.model.hparams.hidden == 9 and cli.trainer.max_steps == 4


def test_several_config_files_later_wins(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("model:\n  hidden: 3\n  lr: 0.2\ntrainer:\n  max_epochs: 4\n")
    second.write_text("model:\n  hidden: 5\n")
    cli = LightningCLI(CLIModel, CLIData, run=False,
                       args=["--config", str(first), "--config", str(second), "--trainer.max_epochs=6"])
    assert cli.model.hparams.hidden == 5 and cli.model.hparams.lr == 0.2
    assert cli.trainer.max_epochs == 6  # a later command-line argument wins over the files


def test_subcommand_config_and_method_arguments(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  max_epochs: 2\nmodel:\n  hidden: 6\n")
    parser_seen = {}

    class Spy(LightningCLI):
        def before_instantiate_classes(self):
            parser_seen["ckpt_path"] = self.config.fit.ckpt_path

        def fit(self, **kwargs):  # a method of the CLI replaces the trainer's
            parser_seen["kwargs"] = sorted(kwargs)

    cli = Spy(CLIModel, CLIData, args=["fit", "--config", str(config), "--ckpt_path=last"])
    assert cli.subcommand == "fit" and cli.model.hparams.hidden == 6 and cli.trainer.max_epochs == 2
    assert parser_seen == {"ckpt_path": "last", "kwargs": ["ckpt_path", "datamodule", "model", "weights_only"]}


def test_help_shows_docstring_descriptions(capsys):
    with pytest.raises(SystemExit) as error:
        LightningCLI(CLIModel, CLIData, args=["fit", "--help"])
    assert error.value.code == 0
    out = capsys.readouterr().out
    assert "--model.hidden HIDDEN" in out and "width of the hidden layer" in out
    assert "--trainer.max_epochs" in out and "--data.batch_size" in out and "--optimizer" in out


def test_print_config_is_yaml_that_reproduces_the_config(tmp_path, capsys):
    args = ["fit", "--model.hidden=5", "--trainer.max_epochs=2", "--seed_everything=3",
            "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val_loss",
            "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}"]
    with pytest.raises(SystemExit) as error:
        LightningCLI(CLIModel, CLIData, args=[*args, "--print_config"])
    assert error.value.code == 0
    printed = capsys.readouterr().out
    config = yaml.safe_load(printed)
    assert printed.startswith(f"# fulmen=={L.__version__}")
    assert config["model"] == {"hidden": 5, "lr": 0.1}
    assert config["trainer"]["max_epochs"] == 2 and config["trainer"]["fast_dev_run"] is False
    assert config["trainer"]["callbacks"][0]["class_path"] == "fulmen.callbacks.EarlyStopping"
    assert config["trainer"]["logger"]["class_path"] == "fulmen.loggers.CSVLogger"
    path = tmp_path / "printed.yaml"
    path.write_text(printed)

    class NoRun(LightningCLI):
        def fit(self, **kwargs):
            pass

    direct = NoRun(CLIModel, CLIData, args=args).config.fit.as_dict()
    again = NoRun(CLIModel, CLIData, args=["fit", "--config", str(path)]).config.fit.as_dict()
    assert again.pop("config") and direct.pop("config") is None
    assert again == direct


def test_callbacks_and_logger_by_short_name_and_yaml(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: ModelCheckpoint\n      init_args:\n        monitor: val_loss\n"
        f"  logger:\n    class_path: fulmen.loggers.CSVLogger\n    init_args:\n      save_dir: {tmp_path}\n")
    cli = LightningCLI(CLIModel, CLIData, run=False, args=[
        "--config", str(config), "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.patience=7",
        "--trainer.callbacks.monitor=train_loss"])
    checkpoints = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    stops = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert checkpoints[0].monitor == "val_loss"
    assert stops[0].patience == 7 and stops[0].monitor == "train_loss"
    assert isinstance(cli.trainer.logger, CSVLogger) and cli.trainer.logger.save_dir == str(tmp_path)


def test_subclass_mode_class_path_and_short_name():
    cli = LightningCLI(CLIModel, CLIData, subclass_mode_model=True, run=False, args=[
        "--model=WiderModel", "--model.extra=3", "--model.hidden=2"])
    assert type(cli.model) is WiderModel and cli.model.extra == 3
    cli = LightningCLI(run=False, args=[
        '--model={"class_path": "helpers.cli_models.CLIModel", "init_args": {"hidden": 11}}',
        "--data=CLIData", "--data.batch_size=3"])
    assert type(cli.model) is CLIModel and cli.model.hparams.hidden == 11
    assert type(cli.datamodule) is CLIData and cli.datamodule.batch_size == 3


def test_no_datamodule_class_makes_data_optional():
    cli = LightningCLI(CLIModel, run=False, args=[])
    assert cli.datamodule is None


def test_environment_variables_with_default_env(monkeypatch):
    monkeypatch.setenv("PL_FIT__MODEL__HIDDEN", "12")
    monkeypatch.setenv("PL_FIT__TRAINER__MAX_EPOCHS", "5")

    class NoRun(LightningCLI):
        def fit(self, **kwargs):
            pass

    cli = NoRun(CLIModel, CLIData, parser_kwargs={"default_env": True}, args=["fit"])
    assert cli.model.hparams.hidden == 12 and cli.trainer.max_epochs == 5
    monkeypatch.setenv("PL_MODEL__HIDDEN", "13")
    cli = LightningCLI(CLIModel, CLIData, run=False, parser_kwargs={"default_env": True}, args=[])
    assert cli.model.hparams.hidden == 13
    # Without default_env the variables are not read.
    assert LightningCLI(CLIModel, CLIData, run=False, args=[]).model.hparams.hidden == 4


def test_seed_everything_default_and_values():
    cli = LightningCLI(CLIModel, CLIData, run=False, args=[])
    assert isinstance(cli.config.seed_everything, int) and cli.config.seed_everything is not True
    cli = LightningCLI(CLIModel, CLIData, run=False, seed_everything_default=123, args=[])
    assert cli.config.seed_everything == 123
    import torch

    first = torch.rand(1)
    LightningCLI(CLIModel, CLIData, run=False, args=["--seed_everything=123"])
    assert torch.equal(first, torch.rand(1))
    cli = LightningCLI(CLIModel, CLIData, run=False, args=["--seed_everything=false"])
    assert cli.config.seed_everything is False


def test_trainer_defaults_and_per_subcommand_parser_kwargs(tmp_path):
    marker = EarlyStopping(monitor="val_loss")
    captured = {}

    class NoRun(LightningCLI):
        def fit(self, **kwargs):
            captured["trainer"] = self.trainer

    NoRun(CLIModel, CLIData, trainer_defaults={"max_epochs": 7, "callbacks": [marker]},
          parser_kwargs={"fit": {"default_config_files": [str(_write(tmp_path, "model:\n  hidden: 8\n"))]}},
          args=["fit"])
    trainer = captured["trainer"]
    assert trainer.max_epochs == 7 and marker in trainer.callbacks
    assert trainer.lightning_module is None


def _write(tmp_path, text):
    path = tmp_path / "defaults.yaml"
    path.write_text(text)
    return path


def test_parse_and_instantiate_time_links():
    from helpers.cli_models import LinkedModel

    class Linked(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.link_arguments("data.batch_size", "model.batch_size")
            parser.link_arguments("data.num_outputs", "model.num_outputs", apply_on="instantiate")

    cli = Linked(LinkedModel, CLIData, run=False, args=["--data.batch_size=6"])
    assert cli.model.batch_size == 6 and cli.model.num_outputs == 1
    assert cli.config.model.batch_size == 6


def test_hooks_run_in_order(tmp_path):
    calls = []

    class Hooked(LightningCLI):
        def add_arguments_to_parser(self, parser):
            calls.append("add_arguments_to_parser")
            parser.add_argument("--notes", type=str, default="none")

        def before_instantiate_classes(self):
            calls.append("before_instantiate_classes")

        def after_instantiate_classes(self):
            calls.append("after_instantiate_classes")

        def before_test(self):
            calls.append("before_test")

        def after_test(self):
            calls.append(f"after_test {self.trainer.callback_metrics['test_loss'] > 0}")

    cli = Hooked(CLIModel, CLIData, args=["test", "--notes=hi", "--trainer.logger=false",
                                          "--trainer.enable_progress_bar=false",
                                          f"--trainer.default_root_dir={tmp_path}"])
    assert cli.config.test.notes == "hi"
    # add_arguments_to_parser runs once per subcommand parser.
    assert calls == ["add_arguments_to_parser"] * 4 + ["before_instantiate_classes", "after_instantiate_classes",
                                                       "before_test", "after_test True"]


@pytest.mark.parametrize("args, named", [
    (["fit", "--trainer.max_epoches=2"], "--trainer.max_epoches"),
    (["fit", "--unknown_flag"], "--unknown_flag"),
    (["fit", "--model.lr=abc"], "model.lr"),
    (["fit", "--trainer.precision=17"], "trainer.precision"),
    (["fit", "--trainer.callbacks+=NotACallback"], "trainer.callbacks"),
    (["fitt"], "fitt"),
])
def test_bad_arguments_exit_2_naming_the_argument(args, named, capsys):
    with pytest.raises(SystemExit) as error:
        LightningCLI(CLIModel, CLIData, args=args)
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_args_and_sys_argv_both_given_warns(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--model.hidden=3"])
    with pytest.warns(UserWarning, match="both `args` and command-line arguments"):
        LightningCLI(CLIModel, CLIData, run=False, args=[])


def test_parser_class_and_add_lightning_class_args_errors():
    parser = LightningArgumentParser()
    assert parser.description == "Lightning Trainer command line tool" and parser.env_prefix == "PL"
    added = parser.add_lightning_class_args(EarlyStopping, "early_stopping")
    assert "early_stopping.patience" in added and parser.callback_keys == ["early_stopping"]
    from fulmen.utilities.exceptions import MisconfigurationException

    with pytest.raises(MisconfigurationException, match="Trainer, LightningModule"):
        parser.add_lightning_class_args(dict, "x")


def test_callback_group_added_by_the_user_joins_the_trainer():
    class WithStopping(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_lightning_class_args(EarlyStopping, "early_stopping")
            parser.set_defaults({"early_stopping.monitor": "val_loss", "early_stopping.patience": 2})

    cli = WithStopping(CLIModel, CLIData, run=False, args=["--early_stopping.patience=4"])
    stops = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(stops) == 1 and stops[0].patience == 4


def make_model(width: int = 3) -> CLIModel:
    """Build a CLIModel.

    Args:
        width: the hidden width.
    """
    return CLIModel(hidden=width)


def make_trainer(max_epochs: int = 1, fast: bool = False) -> L.Trainer:
    return L.Trainer(max_epochs=max_epochs, fast_dev_run=fast)


def test_classes_given_as_functions():
    cli = LightningCLI(make_model, CLIData, trainer_class=make_trainer, run=False,
                       args=["--model.width=9", "--trainer.max_epochs=4"])
    assert isinstance(cli.model, CLIModel) and cli.model.net[0].out_features == 9
    assert cli.trainer.max_epochs == 4
    with pytest.raises(SystemExit):
        LightningCLI(make_model, CLIData, trainer_class=make_trainer, run=False, args=["--trainer.devices=2"])
