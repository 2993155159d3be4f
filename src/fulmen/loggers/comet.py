"""CometLogger: parameters, metrics and the model graph to Comet (comet.com).

`comet_ml` is an optional package (`pip install comet-ml`). As in Lightning, the Comet experiment is started when
the logger is created, on global rank zero only.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

from fulmen.loggers.logger import Logger, rank_zero_experiment
from fulmen.loggers.utilities import params_dict, require_package
from fulmen.utilities.rank_zero import rank_zero_only

log = logging.getLogger(__name__)

# Comet groups runs by the integration that sent them; fulmen's calls are Lightning's, so it reports as Lightning.
FRAMEWORK_NAME = "pytorch-lightning"



class CometLogger(Logger):
    """Log to Comet.

    Args:
        api_key: Comet API key (else Comet's configuration, e.g. `comet login`).
        workspace: Comet workspace (default: the account's default workspace).
        project: Comet project (default: Comet's "Uncategorized").
        experiment_key: the experiment's key: an existing experiment to continue, or the key for a new one.
        mode: `"get_or_create"`, `"get"` (continue `experiment_key`) or `"create"` (always a new experiment).
        online: `False` stores the experiment locally (offline) instead of sending it.
        prefix: prefix Comet puts in front of the metric names.
        **kwargs: Comet experiment settings (`name`, `offline_directory`, `log_code`, ...), passed to
            `comet_ml.ExperimentConfig`.
    """

    def __init__(self, *, api_key: str | None = None, workspace: str | None = None, project: str | None = None,
                 experiment_key: str | None = None, mode: Literal["get_or_create", "get", "create"] | None = None,
                 online: bool | None = None, prefix: str | None = None, **kwargs: Any) -> None:
        require_package("comet_ml", "comet-ml", "CometLogger")
        super().__init__()
        project, online = _renamed_arguments(kwargs, project, online)
        self._api_key = api_key
        self._experiment: Any = None
        self._workspace = workspace
        self._mode = mode
        self._online = online
        self._project_name = project
        self._experiment_key = experiment_key
        self._prefix = prefix
        self._kwargs = kwargs
        # comet_ml instruments libraries imported before it unless told not to; the Trainer's calls log instead.
        os.environ["COMET_DISABLE_AUTO_LOGGING"] = "1"
        import comet_ml

        config = dict(kwargs)
        if online is False:
            config["disabled"] = True
        self._comet_config = comet_ml.ExperimentConfig(**config)
        if rank_zero_only.rank == 0:
            self._create_experiment()

    def _create_experiment(self) -> None:
        import comet_ml

        self._experiment = comet_ml.start(
            api_key=self._api_key, workspace=self._workspace, project=self._project_name,
            experiment_key=self._experiment_key, mode=self._mode, online=self._online,
            experiment_config=self._comet_config,
        )
        if self._experiment is None:
            raise comet_ml.exceptions.ExperimentNotFound(
                "comet_ml.start() returned no experiment; check the API key, workspace, project and experiment_key.")
        self._experiment_key = self._experiment.get_key()
        self._project_name = self._experiment.project_name
        self._experiment.log_other("Created from", FRAMEWORK_NAME)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The Comet experiment (started here if this process has none yet, e.g. after being pickled)."""
        if not self._experiment:
            self._create_experiment()
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        self.experiment.__internal_api__log_parameters__(
            parameters=params_dict(params), framework=FRAMEWORK_NAME, flatten_nested=True, source="manual")

    @rank_zero_only
    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        values = {key: value.detach().cpu() if hasattr(value, "detach") else value for key, value in metrics.items()}
        epoch = values.pop("epoch", None)  # Comet records the epoch as its own field
        self.experiment.__internal_api__log_metrics__(values, step=step, epoch=epoch, prefix=self._prefix,
                                                      framework=FRAMEWORK_NAME)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Flush what was logged; the experiment stays open so it can still be used after training."""
        if self._experiment is None:
            return
        self.experiment.flush()

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        if self._experiment is not None:
            self._experiment.__internal_api__set_model_graph__(graph=model, framework=FRAMEWORK_NAME)

    @property
    def save_dir(self) -> str | None:
        """Comet's offline directory (`offline_directory`), if set."""
        return self._comet_config.offline_directory

    @property
    def name(self) -> str | None:
        """The Comet project name."""
        return self._project_name

    @property
    def version(self) -> str | None:
        """The experiment key (None until the experiment exists)."""
        return self._experiment.get_key() if self._experiment is not None else None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # The experiment holds network connections; a copy reopens the same experiment by its key.
        state["_experiment_key"] = self._experiment.get_key() if self._experiment is not None else None
        state["_experiment"] = None
        return state


def _renamed_arguments(kwargs: dict[str, Any], project: str | None, online: bool | None) -> tuple[Any, Any]:
    """Accept the argument names of older Lightning versions (`experiment_name`, `project_name`, `offline`,
    `save_dir`) with a deprecation message; `kwargs` is updated in place. Returns `(project, online)`."""

    def deprecated(old: str, new: str) -> None:
        log.warning(f"CometLogger's `{old}` argument is deprecated; use `{new}` instead.")

    def both(old: str, new: str) -> None:
        log.warning(f"CometLogger got both `{old}` and `{new}`; `{new}` is used. Pass only `{new}`.")

    # Lightning quirk kept: an old name given next to its new one stays in the experiment settings, except
    # `experiment_name`, which is always dropped.
    if "experiment_name" in kwargs:
        deprecated("experiment_name", "name")
        experiment_name = kwargs.pop("experiment_name")
        if "name" in kwargs:
            both("experiment_name", "name")
        else:
            kwargs["name"] = experiment_name
    if "project_name" in kwargs:
        deprecated("project_name", "project")
        if project is None:
            project = kwargs.pop("project_name")
        else:
            both("project_name", "project")
    if "offline" in kwargs:
        deprecated("offline", "online")
        if online is None:
            # Differs from Lightning 2.6, which takes `online = offline` (offline=True went online).
            online = not kwargs.pop("offline")
        else:
            both("offline", "online")
    if "save_dir" in kwargs:
        deprecated("save_dir", "offline_directory")
        if "offline_directory" in kwargs:
            both("save_dir", "offline_directory")
        else:
            kwargs["offline_directory"] = kwargs.pop("save_dir")
    return project, online
