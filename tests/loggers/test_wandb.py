"""WandbLogger against a recording fake of the `wandb` package (no network, wandb not installed).

Every expected call sequence below is what Lightning 2.6.6's WandbLogger made with the same fake for the same
script (recorded in a scratch venv); fulmen must make the same calls.
"""

import os
import pickle
import subprocess
import sys
import warnings
from argparse import Namespace

import pytest
import torch
from torch import nn

from fulmen.callbacks import ModelCheckpoint
from fulmen.loggers import WandbLogger
from fulmen.loggers.logger import DummyExperiment
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_only
from helpers.logger_probes import fake_package, fit_logged, recorded


@pytest.fixture
def calls(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # wandb's default save_dir is "."
    for key in ("WANDB_PROJECT", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    with fake_package("wandb") as recorded_calls:
        yield recorded_calls


INIT_DEFAULTS = {"name": None, "project": "lightning_logs", "dir": ".", "id": None, "resume": "allow",
                 "anonymous": None}
STEP_AXIS = [
    ("wandb.run.define_metric", ["trainer/global_step"], {}),
    ("wandb.run.define_metric", ["*"], {"step_metric": "trainer/global_step", "step_sync": True}),
]
HPARAMS = [("wandb.config.update", [{"lr": 0.1, "width": 4}], {"allow_val_change": True})]


def _epoch(epoch):
    """The metric logs of one epoch of `StepLogger` (2 train steps, then validation)."""
    step = 2 * epoch
    return [
        ("wandb.run.log", [{"a": 10.0 * epoch, "epoch": epoch, "trainer/global_step": step}], {}),
        ("wandb.run.log", [{"a": 10.0 * epoch + 1, "epoch": epoch, "trainer/global_step": step + 1}], {}),
        ("wandb.run.log", [{"v": float(epoch), "epoch": epoch, "trainer/global_step": step + 1}], {}),
    ]


def _upload(name, path, score, settings, aliases, policy="mutable"):
    metadata = {"score": score, "original_filename": path.rsplit("/", 1)[-1], "ModelCheckpoint": settings}
    return [
        ("wandb.Artifact", [name], {"type": "model", "metadata": metadata}),
        ("wandb.Artifact.add_file", [path], {"name": "model.ckpt", "policy": policy}),
        ("wandb.run.log_artifact", [name], {"aliases": aliases}),
    ]


def _settings(monitor, mode, save_last, save_top_k):
    return {"monitor": monitor, "mode": mode, "save_last": save_last, "save_top_k": save_top_k,
            "save_weights_only": False, "_every_n_train_steps": 0}


def test_fit_with_log_model_all_uploads_each_checkpoint_as_lightning(calls, tmp_path):
    logger = WandbLogger(project="proj", name="run", save_dir=tmp_path, log_model="all", tags=["x"])
    trainer = fit_logged(tmp_path, logger, ModelCheckpoint(monitor="v", mode="max", save_top_k=2))

    settings = _settings("v", "max", None, 2)
    assert recorded(calls, tmp_path) == [
        ("wandb.init", [], {**INIT_DEFAULTS, "name": "run", "project": "proj", "dir": ".", "tags": ["x"]}),
        *STEP_AXIS, *HPARAMS, *_epoch(0),
        *_upload("model-run0", "proj/run0/checkpoints/epoch=0-step=2.ckpt", 0.0, settings, ["latest", "best"]),
        *_epoch(1),
        *_upload("model-run0", "proj/run0/checkpoints/epoch=1-step=4.ckpt", 1.0, settings, ["latest", "best"]),
    ]
    assert trainer.checkpoint_callback.dirpath == str(tmp_path / "proj" / "run0" / "checkpoints")
    assert (logger.name, logger.version, logger.save_dir) == ("proj", "run0", str(tmp_path))


def test_log_model_true_uploads_at_the_end(calls, tmp_path):
    logger = WandbLogger(log_model=True, checkpoint_name="ck", add_file_policy="immutable")
    fit_logged(tmp_path, logger, ModelCheckpoint(monitor="v", save_top_k=1, save_last=True))

    settings = _settings("v", "min", True, 1)
    folder = "./lightning_logs/run0/checkpoints"
    assert recorded(calls, tmp_path) == [
        ("wandb.init", [], INIT_DEFAULTS), *STEP_AXIS, *HPARAMS, *_epoch(0), *_epoch(1),
        *_upload("ck", f"{folder}/epoch=0-step=2.ckpt", 0.0, settings, ["latest", "best"], "immutable"),
        *_upload("ck", f"{folder}/last.ckpt", 0.0, settings, ["latest"], "immutable"),
    ]


def test_log_model_true_with_save_top_k_all_uploads_as_saved(calls, tmp_path):
    fit_logged(tmp_path, WandbLogger(log_model=True, id="myid"), ModelCheckpoint(save_top_k=-1))

    settings = _settings(None, "min", None, -1)
    folder = "./lightning_logs/myid/checkpoints"
    assert recorded(calls, tmp_path) == [
        ("wandb.init", [], {**INIT_DEFAULTS, "id": "myid"}), *STEP_AXIS, *HPARAMS, *_epoch(0),
        *_upload("model-myid", f"{folder}/epoch=0-step=2.ckpt", None, settings, ["latest", "best"]),
        *_epoch(1),
        *_upload("model-myid", f"{folder}/epoch=1-step=4.ckpt", None, settings, ["latest", "best"]),
    ]


def test_failed_run_uploads_nothing(calls, tmp_path):
    logger = WandbLogger(log_model=True)
    fit_logged(tmp_path, logger, ModelCheckpoint(monitor="v"), epochs=1)
    uploads = len([call for call in recorded(calls) if call[0] == "wandb.Artifact"])
    logger.finalize("failed")
    assert uploads == 1 and len([call for call in recorded(calls) if call[0] == "wandb.Artifact"]) == 1


class _Text:
    def __str__(self):
        return "OBJ"


def test_direct_calls_media_watch_and_artifacts(calls, tmp_path):
    logger = WandbLogger(name="n", version="ver", dir="d", anonymous=True, prefix="p", entity="team")
    # `dir` is not used: `save_dir` defaults to ".", which wins (Lightning quirk).
    assert (logger.name, logger.version, logger.save_dir) == ("lightning_logs", "ver", ".")
    logger.log_hyperparams(Namespace(a=1, f=lambda: 5, cls=nn.Linear, o=_Text(), l=[1, 2], d={"x": 1}))
    logger.log_hyperparams(None)
    logger.log_metrics({"x": torch.tensor(1.5)}, step=3)
    logger.log_metrics({"y": 2.0})
    logger.log_image("imgs", images=["a.png", "b.png"], caption=["c1", "c2"], step=1)
    logger.log_image(key="one", images=["c.png"])
    logger.log_table("t", columns=["a"], data=[[1]], step=2)
    logger.log_table("t2", dataframe="DF")
    logger.log_text("txt", columns=["a"], data=[["s"]])
    logger.log_audio("aud", audios=["x.wav"], sample_rate=[16000], step=4)
    logger.log_video("vid", videos=["x.mp4"], fps=[4], caption=["c"])
    logger.watch(nn.Linear(2, 2))
    logger.watch(nn.Linear(2, 2), log="all", log_freq=5, log_graph=False)
    logger.use_artifact("ent/proj/art:v0", artifact_type="model")
    first = WandbLogger.download_artifact("ent/proj/art:v1", save_dir=tmp_path / "dl", artifact_type="model")
    second = WandbLogger.download_artifact("ent/proj/art:v2", use_artifact=False)
    logger.finalize("success")

    def table(columns, data, dataframe=None):
        return ["Table", [], {"columns": columns, "data": data, "dataframe": dataframe}]

    assert recorded(calls, tmp_path) == [
        ("wandb.init", [], {**INIT_DEFAULTS, "name": "n", "id": "ver", "anonymous": "allow", "entity": "team"}),
        *STEP_AXIS,
        ("wandb.config.update", [{"a": 1, "f": 5, "cls": "Linear", "o": "OBJ", "l": [1, 2], "d": {"x": 1}}],
         {"allow_val_change": True}),
        ("wandb.config.update", [{}], {"allow_val_change": True}),
        ("wandb.run.log", [{"p-x": 1.5, "trainer/global_step": 3}], {}),
        ("wandb.run.log", [{"p-y": 2.0}], {}),
        ("wandb.run.log", [{"p-imgs": [["Image", ["a.png"], {"caption": "c1"}],
                                       ["Image", ["b.png"], {"caption": "c2"}]], "trainer/global_step": 1}], {}),
        ("wandb.run.log", [{"p-one": [["Image", ["c.png"], {}]]}], {}),
        ("wandb.run.log", [{"p-t": table(["a"], [[1]]), "trainer/global_step": 2}], {}),
        ("wandb.run.log", [{"p-t2": table(None, None, "DF")}], {}),
        ("wandb.run.log", [{"p-txt": table(["a"], [["s"]])}], {}),
        ("wandb.run.log", [{"p-aud": [["Audio", ["x.wav"], {"sample_rate": 16000}]], "trainer/global_step": 4}], {}),
        ("wandb.run.log", [{"p-vid": [["Video", ["x.mp4"], {"fps": 4, "caption": "c"}]]}], {}),
        ("wandb.run.watch", ["Linear"], {"log": "gradients", "log_freq": 100, "log_graph": True}),
        ("wandb.run.watch", ["Linear"], {"log": "all", "log_freq": 5, "log_graph": False}),
        ("wandb.run.use_artifact", ["ent/proj/art:v0"], {"type": "model"}),
        ("wandb.run.use_artifact", ["ent/proj/art:v1"], {"type": None}),
        ("wandb.Artifact.download", ["ent/proj/art:v1"], {"root": "dl"}),
        ("wandb.Api.artifact", ["ent/proj/art:v2"], {"type": None}),
        ("wandb.Artifact.download", ["ent/proj/art:v2"], {"root": None}),
    ]
    assert first == str(tmp_path / "dl") and second == "artifacts/ent/proj/art:v2"


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda logger: logger.log_image("i", images="notalist"), TypeError, 'Expected a list as "images"'),
    (lambda logger: logger.log_image("i", images=["a"], caption=["x", "y"]), ValueError,
     "Expected 1 items but only found 2 for caption"),
    (lambda logger: logger.log_audio("i", audios="x"), TypeError, 'Expected a list as "audios"'),
    (lambda logger: logger.log_video("i", videos=["a"], fps=[]), ValueError, "only found 0 for fps"),
])
def test_media_arguments_are_checked(calls, call, error, message):
    with pytest.raises(error, match=message):
        call(WandbLogger())


def test_offline_with_log_model_is_refused(calls):
    with pytest.raises(MisconfigurationException, match="offline.*log_model=False"):
        WandbLogger(offline=True, log_model=True)


def test_pickled_logger_attaches_to_the_same_run(calls):
    logger = WandbLogger(project="p")
    data = pickle.dumps(logger)
    import wandb

    wandb.run = None  # a fresh process: no active run
    copy = pickle.loads(data)
    assert copy.experiment.id == "run0" and copy.version == "run0" and copy._name == "fake-run"
    assert recorded(calls) == [
        ("wandb.require", ["service"], {}),
        ("wandb.init", [], {**INIT_DEFAULTS, "project": "p"}), *STEP_AXIS,
        ("wandb._attach", ["attach-run0"], {}),
    ]


def test_an_active_run_is_reused_and_offline_sets_the_mode(calls):
    import wandb

    run = wandb.init(project="mine")
    with pytest.warns(UserWarning, match="wandb.finish()"):
        experiment = WandbLogger(project="p", offline=True).experiment
    assert experiment is run and recorded(calls) == [("wandb.init", [], {"project": "mine"})]
    assert os.environ["WANDB_MODE"] == "dryrun"


def test_sync_tensorboard_uses_its_step_and_project_comes_from_the_environment(calls, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "envproj")
    logger = WandbLogger(sync_tensorboard=True, save_dir=None, dir="dd")
    logger.log_metrics({"x": 1.0}, step=2)
    assert (logger.save_dir, logger.name) == ("dd", "envproj")
    assert recorded(calls) == [
        ("wandb.init", [], {**INIT_DEFAULTS, "project": "envproj", "dir": "dd", "sync_tensorboard": True}),
        ("wandb.run.define_metric", ["*"], {"step_metric": "global_step"}),
        ("wandb.run.log", [{"x": 1.0}], {}),
    ]


def test_only_rank_zero_writes(calls, monkeypatch, tmp_path):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = WandbLogger(project="p", log_model="all")
    logger.log_metrics({"x": 1.0}, step=1)
    logger.log_hyperparams({"a": 1})
    logger.log_image("i", ["a"])
    assert WandbLogger.download_artifact("x") is None
    assert isinstance(logger.experiment, DummyExperiment) and logger.version is None
    logger.experiment.log({"x": 1})
    assert calls == []


def test_missing_wandb_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail like an absent package
    with pytest.raises(ModuleNotFoundError, match="pip install wandb"):
        WandbLogger()


def test_loggers_do_not_import_their_packages_until_used():
    code = ("import sys, fulmen.loggers as l; l.WandbLogger, l.CometLogger, l.LitLogger; "
            "import fulmen.loggers.neptune; "
            "print([m for m in ('wandb', 'comet_ml', 'litlogger', 'neptune') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_trainer_logs_through_wandb_without_warnings_about_it(calls, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_logged(tmp_path, WandbLogger(), epochs=1)
    assert [str(warning.message) for warning in caught if "wandb" in str(warning.message).lower()] == []
    assert [call[0] for call in recorded(calls)][:4] == ["wandb.init", "wandb.run.define_metric",
                                                         "wandb.run.define_metric", "wandb.config.update"]


def test_other_ranks_name_rank_zeros_run(calls, monkeypatch):
    from types import SimpleNamespace

    from fulmen.loggers.selection import share_logger_versions

    first = WandbLogger()
    first.experiment  # rank zero starts the run
    shared = []
    share_logger_versions([first], SimpleNamespace(world_size=2, is_global_zero=True,
                                                   broadcast=lambda value: shared.append(value) or value))
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    other = WandbLogger()
    share_logger_versions([other], SimpleNamespace(world_size=2, is_global_zero=False, broadcast=lambda _: shared[0]))
    assert shared == [["run0"]] and other.version == "run0"
    assert [call[0] for call in recorded(calls)].count("wandb.init") == 1
