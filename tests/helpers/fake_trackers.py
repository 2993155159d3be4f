"""Recording stand-ins for the `wandb`, `comet_ml` and `litlogger` packages (no network, no install).

`fake_modules(name, calls)` returns `{module name: module}` to put in `sys.modules`; every call a logger makes on
the package lands in `calls` as `(what, args, kwargs)`. `normalize(calls, root)` turns them into plain data
(tensors to floats, media and artifacts to tuples, paths under `root` relative) for comparing call sequences.

This file imports neither fulmen nor Lightning, so the same fakes recorded Lightning 2.6's own loggers; the
expected sequences in tests/loggers/ come from those recordings.
"""

from __future__ import annotations

import os
import types
from typing import Any


class _Media:
    """wandb.Image / Audio / Video / Table: remembers how it was built."""

    kind = "Media"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and (self.args, self.kwargs) == (other.args, other.kwargs)

    def __repr__(self) -> str:
        return f"{self.kind}{self.args}{self.kwargs}"


def _media_class(kind: str) -> type:
    return type(kind, (_Media,), {"kind": kind})


class _Recorder:
    def __init__(self, calls: list, prefix: str) -> None:
        self._calls, self._prefix = calls, prefix

    def _record(self, what: str, *args: Any, **kwargs: Any) -> None:
        self._calls.append((f"{self._prefix}{what}", args, kwargs))


# -- wandb ------------------------------------------------------------------------------------------------


def _fake_wandb(calls: list) -> dict[str, types.ModuleType]:
    wandb = types.ModuleType("wandb")
    record = _Recorder(calls, "wandb.")._record

    class Config(dict):
        def update(self, params: Any, allow_val_change: bool = False) -> None:
            record("config.update", dict(params), allow_val_change=allow_val_change)
            super().update(params)

    class Artifact:
        def __init__(self, name: str, type: str | None = None, metadata: Any = None) -> None:
            self.name, self.type, self.metadata = name, type, metadata
            record("Artifact", name, type=type, metadata=metadata)

        def add_file(self, local_path: str, name: str | None = None, policy: str | None = None) -> None:
            record("Artifact.add_file", local_path, name=name, policy=policy)

        def download(self, root: str | None = None) -> str:
            record("Artifact.download", self.name, root=root)
            return root or os.path.join("artifacts", self.name)

    class Run:
        def __init__(self, id: str | None = None, name: str | None = None) -> None:
            self.id = id or "run0"
            self.name = name or "fake-run"
            self._attach_id = f"attach-{self.id}"
            self.config = Config()

        def define_metric(self, *args: Any, **kwargs: Any) -> None:
            record("run.define_metric", *args, **kwargs)

        def log(self, data: dict, *args: Any, **kwargs: Any) -> None:
            record("run.log", dict(data), *args, **kwargs)

        def watch(self, model: Any, **kwargs: Any) -> None:
            record("run.watch", type(model).__name__, **kwargs)

        def log_artifact(self, artifact: Any, aliases: Any = None) -> None:
            record("run.log_artifact", artifact.name, aliases=aliases)

        def use_artifact(self, artifact: Any, type: str | None = None) -> Any:
            record("run.use_artifact", artifact, type=type)
            return _Downloadable(artifact)

    class _Downloadable(Artifact):
        def __init__(self, name: str) -> None:  # a fetched artifact: no `Artifact(...)` construction recorded
            self.name = name

    class RunDisabled:
        pass

    class Api:
        def artifact(self, name: str, type: str | None = None) -> Any:
            record("Api.artifact", name, type=type)
            return _Downloadable(name)

    def init(**kwargs: Any) -> Run:
        record("init", **kwargs)
        wandb.run = Run(id=kwargs.get("id"), name=kwargs.get("name"))
        return wandb.run

    def require(requirement: str) -> None:
        record("require", requirement)

    def _attach(attach_id: str) -> Run:
        record("_attach", attach_id)
        return Run(id=attach_id.replace("attach-", ""))

    wandb.run = None
    wandb.init, wandb.require, wandb._attach = init, require, _attach
    wandb.Artifact, wandb.Api, wandb.Run = Artifact, Api, Run
    for kind in ("Image", "Audio", "Video", "Table"):
        setattr(wandb, kind, _media_class(kind))
    sdk, lib, wandb_run = (types.ModuleType(name) for name in ("wandb.sdk", "wandb.sdk.lib", "wandb.wandb_run"))
    lib.RunDisabled, wandb_run.Run = RunDisabled, Run
    wandb.sdk, sdk.lib, wandb.wandb_run = sdk, lib, wandb_run
    return {"wandb": wandb, "wandb.sdk": sdk, "wandb.sdk.lib": lib, "wandb.wandb_run": wandb_run}


# -- comet_ml ----------------------------------------------------------------------------------------------


class _CometConfig:
    """What comet_ml.ExperimentConfig(...) returns: picklable, as the real one (the logger pickles it)."""

    def __init__(self, kwargs: dict) -> None:
        self.kwargs = kwargs
        self.offline_directory = kwargs.get("offline_directory")


def _fake_comet(calls: list) -> dict[str, types.ModuleType]:
    comet_ml = types.ModuleType("comet_ml")
    record = _Recorder(calls, "comet_ml.")._record

    class ExperimentNotFound(Exception):
        pass

    def ExperimentConfig(**kwargs: Any) -> _CometConfig:  # noqa: N802 (comet_ml's class name)
        record("ExperimentConfig", **kwargs)
        return _CometConfig(kwargs)

    class Experiment:
        def __init__(self, key: str | None, project: str | None) -> None:
            self._key = key or "0123456789abcdef0123456789abcdef"
            self.project_name = project or "general"

        def get_key(self) -> str:
            return self._key

        def __getattr__(self, name: str) -> Any:
            if name.startswith("__") and not name.startswith("__internal_api__"):
                raise AttributeError(name)
            return lambda *args, **kwargs: record(f"experiment.{name}", *args, **kwargs)

    def start(**kwargs: Any) -> Experiment:
        config = kwargs.get("experiment_config")
        record("start", **{**kwargs, "experiment_config": getattr(config, "kwargs", config)})
        if comet_ml.fail_start:
            return None
        return Experiment(kwargs.get("experiment_key"), kwargs.get("project"))

    exceptions = types.ModuleType("comet_ml.exceptions")
    exceptions.ExperimentNotFound = ExperimentNotFound
    comet_ml.exceptions, comet_ml.ExperimentConfig, comet_ml.start = exceptions, ExperimentConfig, start
    comet_ml.fail_start = False
    return {"comet_ml": comet_ml, "comet_ml.exceptions": exceptions}


# -- litlogger ---------------------------------------------------------------------------------------------


def _fake_litlogger(calls: list) -> dict[str, types.ModuleType]:
    litlogger = types.ModuleType("litlogger")
    record = _Recorder(calls, "litlogger.")._record

    class _Series:
        def __init__(self, key: str) -> None:
            self.key = key

        def append(self, value: Any, step: int | None = None) -> None:
            record("experiment.append", self.key, value, step=step)

        def save(self, path: str) -> str:
            record("experiment.file.save", self.key, path)
            return path

    class Experiment:
        def __init__(self, **kwargs: Any) -> None:
            record("Experiment", **kwargs)
            self.name = kwargs.get("name")
            self.url = f"https://lightning.ai/fake/{self.name}"

        def print_url(self) -> None:
            record("experiment.print_url")

        def __getitem__(self, key: str) -> _Series:
            return _Series(key)

        def __setitem__(self, key: str, value: Any) -> None:
            record("experiment.set", key, value)

        def finalize(self, status: Any = None) -> None:
            record("experiment.finalize", status)

    class Model(_Media):
        kind = "Model"

    class File(_Media):
        kind = "File"

    generator = types.ModuleType("litlogger.generator")
    generator._create_name = lambda: "generated-name"
    litlogger.Experiment, litlogger.Model, litlogger.File, litlogger.generator = Experiment, Model, File, generator
    return {"litlogger": litlogger, "litlogger.generator": generator}


_FACTORIES = {"wandb": _fake_wandb, "comet_ml": _fake_comet, "litlogger": _fake_litlogger}


def fake_modules(name: str, calls: list) -> dict[str, types.ModuleType]:
    """The fake package `name` ("wandb", "comet_ml" or "litlogger") and its submodules, recording into `calls`."""
    return _FACTORIES[name](calls)


def normalize(calls: list, root: Any = None) -> list:
    """`calls` as plain, comparable data: tensors become floats, media `(kind, args, kwargs)`, paths under
    `root` relative to it, models their class name."""
    root = None if root is None else os.fspath(root)

    def plain(value: Any) -> Any:
        if isinstance(value, _Media):
            return [value.kind, plain(list(value.args)), plain(value.kwargs)]
        if isinstance(value, dict):
            return {str(key): plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if hasattr(value, "item") and hasattr(value, "dim"):  # a tensor
            return round(float(value.item()), 6)
        if isinstance(value, float):
            return round(value, 6)
        if isinstance(value, str) and root and value.startswith(root):
            return os.path.relpath(value, root)
        if hasattr(value, "parameters"):  # a module
            return type(value).__name__
        return value

    return [[what, plain(list(args)), plain(kwargs)] for what, args, kwargs in calls]
