"""Probes for the constructor parameters of the experiment-tracking loggers (WandbLogger, CometLogger, LitLogger,
NeptuneLogger), used by `tests/test_signatures_components.py`, plus what their tests share: a recording fake of
the tracking package in `sys.modules` and a short fit whose logged values do not depend on training numerics."""

import contextlib
import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from helpers.fake_trackers import fake_modules, normalize
from helpers.signature_probes import raises


@contextlib.contextmanager
def fake_package(name):
    """Put the recording fake of package `name` in `sys.modules`; yields its list of calls. Restores
    `sys.modules` and the environment variables the loggers set."""
    calls = []
    modules = fake_modules(name, calls)
    saved_modules = {key: sys.modules.get(key) for key in modules}
    saved_env = {key: os.environ.get(key) for key in ("WANDB_MODE", "COMET_DISABLE_AUTO_LOGGING")}
    sys.modules.update(modules)
    try:
        yield calls
    finally:
        for key, module in saved_modules.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def recorded(calls, root=None):
    """The recorded calls as `(what, args, kwargs)` tuples of plain data (see `fake_trackers.normalize`)."""
    return [tuple(call) for call in normalize(calls, root)]


class StepLogger(L.LightningModule):
    """Logs `a` = batch index + 10 * epoch each training step and `v` = epoch in validation (hyperparameters
    lr and width saved): the values are the same whatever the weights do."""

    def __init__(self, lr=0.1, width=4):
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        self.log("a", float(batch_idx + 10 * self.current_epoch))
        return self.layer(batch).sum()

    def validation_step(self, batch, batch_idx):
        self.log("v", float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_logged(tmp, logger, checkpoint=None, epochs=2):
    """Fit `StepLogger` for `epochs` epochs of 2 train and 2 val batches, logging every step."""
    trainer = L.Trainer(default_root_dir=tmp, max_epochs=epochs, logger=logger, log_every_n_steps=1,
                        callbacks=[checkpoint] if checkpoint else [], enable_checkpointing=checkpoint is not None,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    loader = DataLoader(torch.ones(4, 4), batch_size=2)
    trainer.fit(StepLogger(), loader, loader)
    return trainer


def _calls_named(calls, what):
    return [call for call in recorded(calls) if call[0] == what]


# -- WandbLogger -------------------------------------------------------------------------------------------


def _wandb(make):
    """Build a WandbLogger with the fake package, start its run and log one metric; return (logger, calls)."""
    from fulmen.loggers import WandbLogger

    with fake_package("wandb") as calls:
        logger = make(WandbLogger)
        logger.log_metrics({"x": 1.0}, step=0)
        return logger, calls


def _wandb_init(**options):
    return _calls_named(_wandb(lambda cls: cls(**options))[1], "wandb.init")[0][2]


def _wandb_offline(tmp):
    from fulmen.loggers import WandbLogger

    with fake_package("wandb"):
        WandbLogger(offline=True).experiment
        went_offline = os.environ.get("WANDB_MODE") == "dryrun"
        return went_offline and raises(Exception, "offline", lambda: WandbLogger(offline=True, log_model=True))


def _wandb_artifacts(tmp, **options):
    from fulmen.loggers import WandbLogger

    with fake_package("wandb") as calls:
        fit_logged(tmp, WandbLogger(save_dir=tmp, **options), ModelCheckpoint(monitor="v", mode="max"), epochs=1)
        return recorded(calls, tmp)


def _wandb_experiment(tmp):
    from fulmen.loggers import WandbLogger

    with fake_package("wandb") as calls:
        import wandb

        run = wandb.Run(id="given")
        logger = WandbLogger(experiment=run)
        logger.log_metrics({"x": 1.0}, step=0)
        return logger.experiment is run and logger.version == "given" and _calls_named(calls, "wandb.init") == []


WANDB = {
    "name": lambda tmp: _wandb_init(name="n")["name"] == "n",
    "save_dir": lambda tmp: _wandb_init(save_dir=tmp / "s")["dir"] == str(tmp / "s"),
    "version": lambda tmp: _wandb_init(version="v1")["id"] == "v1",
    "offline": _wandb_offline,
    "dir": lambda tmp: _wandb_init(save_dir=None, dir=tmp / "d")["dir"] == str(tmp / "d"),
    "id": lambda tmp: _wandb_init(id="i1")["id"] == "i1",
    "anonymous": lambda tmp: _wandb_init(anonymous=True)["anonymous"] == "allow",
    "project": lambda tmp: _wandb_init(project="p")["project"] == "p",
    "log_model": lambda tmp: [call[1] for call in _wandb_artifacts(tmp, log_model="all")
                              if call[0] == "wandb.Artifact.add_file"] == [["lightning_logs/run0/checkpoints/"
                                                                           "epoch=0-step=2.ckpt"]],
    "experiment": _wandb_experiment,
    "prefix": lambda tmp: _calls_named(_wandb(lambda cls: cls(prefix="p"))[1], "wandb.run.log")[0][1] == [
        {"p-x": 1.0, "trainer/global_step": 0}],
    "checkpoint_name": lambda tmp: ("wandb.Artifact", ["ck"]) in [
        call[:2] for call in _wandb_artifacts(tmp, log_model="all", checkpoint_name="ck")],
    "add_file_policy": lambda tmp: [call[2]["policy"] for call in _wandb_artifacts(
        tmp, log_model="all", add_file_policy="immutable") if call[0] == "wandb.Artifact.add_file"] == ["immutable"],
    "kwargs": lambda tmp: _wandb_init(entity="team", group="g")["entity"] == "team",
}


# -- CometLogger -------------------------------------------------------------------------------------------


def _comet_start(**options):
    from fulmen.loggers import CometLogger

    with fake_package("comet_ml") as calls:
        logger = CometLogger(**options)
        logger.log_metrics({"x": 1.0}, step=0)
        return logger, recorded(calls)


def _started(**options):
    return [call for call in _comet_start(**options)[1] if call[0] == "comet_ml.start"][0][2]


COMET = {
    "api_key": lambda tmp: _started(api_key="key")["api_key"] == "key",
    "workspace": lambda tmp: _started(workspace="ws")["workspace"] == "ws",
    "project": lambda tmp: _started(project="p")["project"] == "p" and _comet_start(project="p")[0].name == "p",
    "experiment_key": lambda tmp: _comet_start(experiment_key="k" * 32)[0].version == "k" * 32,
    "mode": lambda tmp: _started(mode="get")["mode"] == "get",
    "online": lambda tmp: _started(online=False)["experiment_config"] == {"disabled": True},
    "prefix": lambda tmp: [call[2]["prefix"] for call in _comet_start(prefix="pre")[1]
                           if call[0] == "comet_ml.experiment.__internal_api__log_metrics__"] == ["pre"],
    "kwargs": lambda tmp: _comet_start(offline_directory=str(tmp / "off"))[0].save_dir == str(tmp / "off"),
}


# -- LitLogger ---------------------------------------------------------------------------------------------


def _lit(tmp, fit=False, **options):
    """A LitLogger (under `tmp` unless `root_dir` is given) that logged one metric, or fitted; (logger, calls)."""
    from fulmen.loggers import LitLogger

    options.setdefault("root_dir", tmp / "logs")
    with fake_package("litlogger") as calls:
        logger = LitLogger(**options)
        if fit:
            fit_logged(tmp, logger, ModelCheckpoint(monitor="v"), epochs=1)
        else:
            logger.log_metrics({"x": 1.0}, step=0)
        return logger, recorded(calls, tmp)


def _lit_experiment(tmp, **options):
    return [call for call in _lit(tmp, **options)[1] if call[0] == "litlogger.Experiment"][0][2]


LITLOGGER = {
    "root_dir": lambda tmp: _lit(tmp, root_dir=tmp / "r")[0].log_dir == str(tmp / "r" / "generated-name"),
    "name": lambda tmp: _lit_experiment(tmp, name="exp")["name"].startswith("exp-"),
    "teamspace": lambda tmp: _lit_experiment(tmp, teamspace="ts")["teamspace"] == "ts",
    "metadata": lambda tmp: _lit_experiment(tmp, metadata={"k": 1})["metadata"] == {"k": "1"},
    "store_step": lambda tmp: _lit_experiment(tmp, store_step=False)["store_step"] is False,
    "log_model": lambda tmp: [call[1][1][0] for call in _lit(tmp, fit=True, log_model=True)[1]
                              if call[0] == "litlogger.experiment.set" and call[1][1][0] == "Model"] == ["Model"],
    "save_logs": lambda tmp: _lit_experiment(tmp, save_logs=False)["save_logs"] is False,
    "checkpoint_name": lambda tmp: [call[1][0] for call in _lit(tmp, fit=True, log_model=True, checkpoint_name="cn")[1]
                                    if call[0] == "litlogger.experiment.set" and call[1][0] == "cn"] == ["cn"],
}


# -- NeptuneLogger -----------------------------------------------------------------------------------------


def _neptune_refuses(*args, **kwargs):
    from fulmen.loggers.neptune import NeptuneLogger

    return raises(RuntimeError, "Neptune.*LitLogger", lambda: NeptuneLogger(*args, **kwargs))


NEPTUNE = {
    "args": lambda tmp: _neptune_refuses("project"),
    "kwargs": lambda tmp: _neptune_refuses(project="p", api_key="k"),
}
