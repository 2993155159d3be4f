"""WandbLogger: metrics, hyperparameters, media and checkpoints to Weights & Biases.

`wandb` is an optional package (`pip install wandb`); it is imported only when the run is first used. Only global
rank zero creates a run and writes; the other ranks get a do-nothing experiment.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Literal

from fulmen.loggers.logger import Logger, rank_zero_experiment
from fulmen.loggers.utilities import (
    add_prefix,
    json_safe,
    params_dict,
    require_package,
    resolve_callables,
    scan_checkpoints,
)
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn

# The ModelCheckpoint settings stored with each uploaded checkpoint (Lightning's artifact metadata).
_CHECKPOINT_SETTINGS = ("monitor", "mode", "save_last", "save_top_k", "save_weights_only", "_every_n_train_steps")


class WandbLogger(Logger):
    """Log to Weights & Biases (`wandb`).

    Args:
        name: display name of the run.
        save_dir: directory wandb writes its local files to (takes precedence over `dir`).
        version: run id, to resume a run; `id` is the same.
        offline: run wandb offline (sync later with `wandb sync`).
        dir: same as `save_dir`; used only when `save_dir=None`.
        id: same as `version`.
        anonymous: allow anonymous logging.
        project: project name; else the `WANDB_PROJECT` environment variable, else `"lightning_logs"`.
        log_model: upload `ModelCheckpoint` checkpoints as wandb artifacts: `"all"` each time one is saved,
            `True` at the end of a successful run (as they are saved when `save_top_k=-1`), `False` never.
        experiment: an existing wandb run to log to.
        prefix: put in front of every metric name, joined with `LOGGER_JOIN_CHAR`.
        checkpoint_name: artifact name of uploaded checkpoints (default `model-<run id>`).
        add_file_policy: `"mutable"` (wandb copies the file first) or `"immutable"`.
        **kwargs: further `wandb.init` arguments (`entity`, `group`, `tags`, ...).
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, name: str | None = None, save_dir: str | os.PathLike = ".", version: str | None = None,
                 offline: bool = False, dir: str | os.PathLike | None = None, id: str | None = None,
                 anonymous: bool | None = None, project: str | None = None, log_model: Literal["all"] | bool = False,
                 experiment: Any = None, prefix: str = "", checkpoint_name: str | None = None,
                 add_file_policy: Literal["mutable", "immutable"] = "mutable", **kwargs: Any) -> None:
        require_package("wandb", "wandb", "WandbLogger")
        if offline and log_model:
            raise MisconfigurationException(
                f"WandbLogger(offline=True, log_model={log_model!r}): an offline run cannot upload checkpoints. "
                "Set `offline=False` to log the model, or `log_model=False` to run offline."
            )
        super().__init__()
        self._offline = offline
        self._log_model = log_model
        self._prefix = prefix
        self._experiment = experiment
        self._attach_id: str | None = None
        self._logged_model_time: dict[str, float] = {}
        self._checkpoint_callbacks: dict[int, Any] = {}
        self._checkpoint_name = checkpoint_name
        self.add_file_policy = add_file_policy
        # Lightning quirk: `dir` is read only when `save_dir` is None, and `save_dir` defaults to ".".
        directory = os.fspath(save_dir) if save_dir is not None else (None if dir is None else os.fspath(dir))
        self._wandb_init: dict[str, Any] = {
            "name": name,
            "project": project or os.environ.get("WANDB_PROJECT", "lightning_logs"),
            "dir": directory,
            "id": version or id,
            "resume": "allow",
            "anonymous": "allow" if anonymous else None,
            **kwargs,
        }
        self._project = self._wandb_init.get("project")
        self._save_dir = self._wandb_init.get("dir")
        self._name = self._wandb_init.get("name")
        self._id = self._wandb_init.get("id")

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for a spawned process: create the run here so the copy attaches to this same run.
        import wandb

        wandb.require("service")
        _ = self.experiment
        state = self.__dict__.copy()
        if self._experiment is not None:
            state["_id"] = getattr(self._experiment, "id", None)
            state["_attach_id"] = getattr(self._experiment, "_attach_id", None)
            state["_name"] = self._experiment.name
        state["_experiment"] = None  # a live run cannot be pickled
        return state

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The wandb run (`wandb.init` on first use; an already running `wandb.run` is reused)."""
        if self._experiment is not None:
            return self._experiment
        import wandb

        if self._offline:
            os.environ["WANDB_MODE"] = "dryrun"
        attach_id = getattr(self, "_attach_id", None)
        if wandb.run is not None:
            rank_zero_warn("A wandb run is already active, so this WandbLogger logs to it; call `wandb.finish()` "
                           "before creating the logger to start a new run instead.")
            self._experiment = wandb.run
        elif attach_id is not None and hasattr(wandb, "_attach"):
            self._experiment = wandb._attach(attach_id)  # the run the pickling process created
        else:
            self._experiment = wandb.init(**self._wandb_init)
            if _is_run(self._experiment) and callable(getattr(self._experiment, "define_metric", None)):
                # Plot every metric against the trainer's global step (TensorBoard's step when syncing it).
                if self._wandb_init.get("sync_tensorboard"):
                    self._experiment.define_metric("*", step_metric="global_step")
                else:
                    self._experiment.define_metric("trainer/global_step")
                    self._experiment.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        return self._experiment

    def run_identity(self) -> Any:
        return getattr(self._experiment, "id", None) if self._experiment is not None else None

    def adopt_run_identity(self, identity: Any) -> None:
        self._id = identity  # other ranks name the same run (and checkpoint directory) as rank zero

    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Let wandb record `model`'s gradients (`log="all"`: also parameters) every `log_freq` steps."""
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        params = json_safe(resolve_callables(params_dict(params)))
        self.experiment.config.update(params, allow_val_change=True)

    @rank_zero_only
    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        metrics = add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        if step is not None and not self._wandb_init.get("sync_tensorboard"):
            self.experiment.log({**metrics, "trainer/global_step": step})
        else:
            self.experiment.log(metrics)

    @rank_zero_only
    def log_table(self, key: str, columns: list[str] | None = None, data: list[list[Any]] | None = None,
                  dataframe: Any = None, step: int | None = None) -> None:
        """Log a `wandb.Table` from `columns` and `data` rows, or from a pandas `dataframe`."""
        import wandb

        self.log_metrics({key: wandb.Table(columns=columns, data=data, dataframe=dataframe)}, step)

    @rank_zero_only
    def log_text(self, key: str, columns: list[str] | None = None, data: list[list[str]] | None = None,
                 dataframe: Any = None, step: int | None = None) -> None:
        """Log text as a `wandb.Table` (same arguments as `log_table`)."""
        self.log_table(key, columns, data, dataframe, step)

    @rank_zero_only
    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log a list of images (tensors, arrays, PIL images or paths); each keyword is a list with one value per
        image (`caption=[...]`, `masks=[...]`, ...)."""
        self._log_media("Image", "images", key, images, step, kwargs)

    @rank_zero_only
    def log_audio(self, key: str, audios: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log a list of audio clips (arrays or paths); keywords are per-clip lists (`sample_rate=[...]`)."""
        self._log_media("Audio", "audios", key, audios, step, kwargs)

    @rank_zero_only
    def log_video(self, key: str, videos: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log a list of videos (arrays or paths); keywords are per-video lists (`fps=[...]`, `caption=[...]`)."""
        self._log_media("Video", "videos", key, videos, step, kwargs)

    def _log_media(self, kind: str, argument: str, key: str, items: Any, step: int | None,
                   options: dict[str, Any]) -> None:
        if not isinstance(items, list):
            raise TypeError(f'Expected a list as "{argument}", found {type(items)}')
        for option, values in options.items():
            if len(values) != len(items):
                raise ValueError(f"Expected {len(items)} items but only found {len(values)} for {option}")
        import wandb

        media = getattr(wandb, kind)
        built = [media(item, **{option: values[index] for option, values in options.items()})
                 for index, item in enumerate(items)]
        self.log_metrics({key: built}, step)

    @property
    def save_dir(self) -> str | None:
        """The directory wandb writes its local files to."""
        return self._save_dir

    @property
    def name(self) -> str | None:
        """The project name (the run's own name is `experiment.name`)."""
        return self._project

    @property
    def version(self) -> str | None:
        """The run id (the one given to the constructor until the run exists)."""
        return self._experiment.id if self._experiment else self._id

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._scan_and_log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback  # uploaded by `finalize`

    @staticmethod
    @rank_zero_only
    def download_artifact(artifact: str, save_dir: str | os.PathLike | None = None, artifact_type: str | None = None,
                          use_artifact: bool | None = True) -> str:
        """Download a wandb artifact and return its local directory; with an active run and `use_artifact`, the
        run records that it used it."""
        import wandb

        if wandb.run is not None and use_artifact:
            found = wandb.run.use_artifact(artifact)
        else:
            found = wandb.Api().artifact(artifact, type=artifact_type)
        return found.download(root=None if save_dir is None else os.fspath(save_dir))

    def use_artifact(self, artifact: str, artifact_type: str | None = None) -> Any:
        """Record that this run uses `artifact`; returns the wandb Artifact."""
        return self.experiment.use_artifact(artifact, type=artifact_type)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if status != "success" or self._experiment is None:
            return  # as Lightning: checkpoints are uploaded only after a successful run
        for checkpoint_callback in self._checkpoint_callbacks.values():
            self._scan_and_log_checkpoints(checkpoint_callback)

    def _scan_and_log_checkpoints(self, checkpoint_callback: Any) -> None:
        import wandb

        for mtime, path, score, _ in scan_checkpoints(checkpoint_callback, self._logged_model_time):
            metadata = {
                "score": score.item() if hasattr(score, "item") else score,
                "original_filename": Path(path).name,
                type(checkpoint_callback).__name__: {
                    key: getattr(checkpoint_callback, key) for key in _CHECKPOINT_SETTINGS
                    if hasattr(checkpoint_callback, key)
                },
            }
            if not self._checkpoint_name:
                self._checkpoint_name = f"model-{self.experiment.id}"
            artifact = wandb.Artifact(name=self._checkpoint_name, type="model", metadata=metadata)
            artifact.add_file(path, name="model.ckpt", policy=self.add_file_policy)
            aliases = ["latest", "best"] if path == checkpoint_callback.best_model_path else ["latest"]
            self.experiment.log_artifact(artifact, aliases=aliases)
            self._logged_model_time[path] = mtime  # a file saved again under the same name is uploaded again


def _is_run(experiment: Any) -> bool:
    """Whether `experiment` is a wandb run (a live or a disabled one); any object when wandb names neither."""
    run_types = []
    for module, name in (("wandb.wandb_run", "Run"), ("wandb.sdk.lib", "RunDisabled")):
        try:
            run_types.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return isinstance(experiment, tuple(run_types)) if run_types else True
