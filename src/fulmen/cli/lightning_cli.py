"""`LightningCLI`: build the Trainer, module and datamodule from command-line arguments and config files, then run."""

from __future__ import annotations

import sys
from functools import partial, update_wrapper
from pathlib import Path
from types import MethodType
from typing import Any, Callable, Optional, Union

import torch
import yaml
from jsonargparse import ActionConfigFile, Namespace, class_from_function
from torch.optim import Optimizer

import fulmen
from fulmen.cli.instantiators import add_instantiators
from fulmen.cli.parser import (ArgsType, LightningArgumentParser, LRSchedulerTypeTuple, LRSchedulerTypeUnion,
                               ReduceLROnPlateau, instantiate_class, with_class_path)
from fulmen.cli.save_config import SaveConfigCallback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.trainer.trainer import Trainer
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.model_helpers import is_overridden
from fulmen.utilities.rank_zero import rank_zero_warn
from fulmen.utilities.seed import seed_everything


class LightningCLI:
    """A command-line tool that builds a Trainer, a LightningModule and (optionally) a LightningDataModule from
    arguments and YAML configs (`fit --config config.yaml --trainer.max_epochs=3 --model.lr=0.1`), then runs
    `fit`/`validate`/`test`/`predict` (or, with `run=False`, only builds them).

    Args:
        model_class: the LightningModule class (or a function returning one); `None` accepts any subclass given as
            `--model=ClassName` or `class_path`.
        datamodule_class: likewise for the LightningDataModule (`--data`); `None` makes `--data` optional.
        save_config_callback: the callback class that saves the config in the log dir (`None`: do not save).
        save_config_kwargs: extra arguments for `save_config_callback` (e.g. `{"overwrite": True}`).
        trainer_class: the Trainer class (or a function returning one).
        trainer_defaults: Trainer flag defaults; `callbacks` given here are always added and not configurable.
        seed_everything_default: `--seed_everything` default: an int seed, `True` for a random one, `False` none.
        parser_kwargs: arguments for every parser, or per subcommand as `{"fit": {...}}` (e.g. `default_env`).
        parser_class: the parser class to use.
        subclass_mode_model: accept any subclass of `model_class` (`class_path`/`init_args`).
        subclass_mode_data: accept any subclass of `datamodule_class`.
        args: arguments to parse instead of `sys.argv[1:]`: a list of strings, or a dict / Namespace config.
        run: parse a subcommand and run it; `False` parses and instantiates only.
        auto_configure_optimizers: add `--optimizer`/`--lr_scheduler` and build the module's
            `configure_optimizers` from them when given.
        load_from_checkpoint_support: the module's `save_hyperparameters()` stores the parsed config, so
            `load_from_checkpoint` can rebuild nested/injected classes.
    """

    def __init__(
        self,
        model_class: Optional[Union[type[LightningModule], Callable[..., LightningModule]]] = None,
        datamodule_class: Optional[Union[type[LightningDataModule], Callable[..., LightningDataModule]]] = None,
        save_config_callback: Optional[type[SaveConfigCallback]] = SaveConfigCallback,
        save_config_kwargs: Optional[dict[str, Any]] = None,
        trainer_class: Union[type[Trainer], Callable[..., Trainer]] = Trainer,
        trainer_defaults: Optional[dict[str, Any]] = None,
        seed_everything_default: Union[bool, int] = True,
        parser_kwargs: Optional[Union[dict[str, Any], dict[str, dict[str, Any]]]] = None,
        parser_class: type[LightningArgumentParser] = LightningArgumentParser,
        subclass_mode_model: bool = False,
        subclass_mode_data: bool = False,
        args: ArgsType = None,
        run: bool = True,
        auto_configure_optimizers: bool = True,
        load_from_checkpoint_support: bool = True,
    ) -> None:
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class
        self.trainer_defaults = trainer_defaults or {}
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = parser_kwargs or {}
        self.parser_class = parser_class
        self.auto_configure_optimizers = auto_configure_optimizers
        self.model_class = model_class
        self._model_class = model_class or LightningModule  # the class the parser uses
        self.subclass_mode_model = model_class is None or subclass_mode_model
        self.datamodule_class = datamodule_class
        self._datamodule_class = datamodule_class or LightningDataModule
        self.subclass_mode_data = datamodule_class is None or subclass_mode_data

        names = self.subcommands()
        main_kwargs = {k: v for k, v in self.parser_kwargs.items() if k not in names}
        subcommand_kwargs = {k: v for k, v in self.parser_kwargs.items() if k in names}
        self.setup_parser(run, main_kwargs, subcommand_kwargs)
        self.parse_arguments(self.parser, args)
        self._parse_ckpt_path()
        self.subcommand = self.config["subcommand"] if run else None
        self._set_seed()
        if load_from_checkpoint_support:
            add_instantiators(self)
        self.before_instantiate_classes()
        self.instantiate_classes()
        self.after_instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # ----------------------------------------------------------------------------------------------- parser setup
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Create a parser (with `-c/--config`)."""
        kwargs.setdefault("dump_header", [f"fulmen=={fulmen.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=ActionConfigFile,
                            help="Path to a configuration file in json or yaml format.")
        return parser

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any],
                     subparser_kwargs: dict[str, Any]) -> None:
        """Create `self.parser` with its subcommands (or, without them, the arguments directly)."""
        self.parser = self.init_parser(**main_kwargs)
        if add_subcommands:
            self._subcommand_method_arguments: dict[str, list[str]] = {}
            self._add_subcommands(self.parser, **subparser_kwargs)
        else:
            self._add_arguments(self.parser)

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add `--seed_everything`."""
        parser.add_argument(
            "--seed_everything", type=Union[bool, int], default=self.seed_everything_default,
            help="Set to an int to run seed_everything with this value before classes instantiation."
                 "Set to True to use a random seed.",
        )

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add the `trainer`, `model` and `data` groups."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        # Without a datamodule class `--data` is optional: the module may have its own dataloaders.
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=self.subclass_mode_data,
                                        required=self.datamodule_class is not None)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Override to add arguments or `parser.link_arguments(...)`."""

    def _add_arguments(self, parser: LightningArgumentParser) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            if not parser._optimizers:  # the user's add_arguments_to_parser may have added its own
                parser.add_optimizer_args((Optimizer,))
            if not parser._lr_schedulers:
                parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        self.link_optimizers_and_lr_schedulers(parser)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """The subcommands, each with the Trainer-method arguments the CLI fills itself (not parsed)."""
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
            "validate": {"model", "dataloaders", "datamodule"},
            "test": {"model", "dataloaders", "datamodule"},
            "predict": {"model", "dataloaders", "datamodule"},
        }

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        self._subcommand_parsers: dict[str, LightningArgumentParser] = {}
        subcommands = parser.add_subcommands()
        trainer_class = (self.trainer_class if isinstance(self.trainer_class, type)
                         else class_from_function(self.trainer_class))
        for subcommand in self.subcommands():
            description = _short_description(getattr(trainer_class, subcommand))
            subparser_kwargs = dict(kwargs.get(subcommand, {}))
            subparser_kwargs.setdefault("description", description)
            subparser = self.init_parser(**subparser_kwargs)
            self._add_arguments(subparser)
            # The method's own arguments (e.g. `--ckpt_path`); kept to pass them to the call.
            self._subcommand_method_arguments[subcommand] = subparser.add_method_arguments(
                trainer_class, subcommand, skip=set(self.subcommands()[subcommand]))
            self._subcommand_parsers[subcommand] = subparser
            subcommands.add_subcommand(subcommand, subparser, help=description)

    @staticmethod
    def link_optimizers_and_lr_schedulers(parser: LightningArgumentParser) -> None:
        """Link optimizer/scheduler groups registered with a `link_to` target to that target."""
        for key, (class_type, link_to) in {**parser._optimizers, **parser._lr_schedulers}.items():
            if link_to == "AUTOMATIC":
                continue
            if isinstance(class_type, tuple):
                parser.link_arguments(key, link_to)
            else:
                parser.link_arguments(key, link_to, compute_fn=partial(with_class_path, class_type))

    # --------------------------------------------------------------------------------------------------- parsing
    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse `args` (or `sys.argv`) into `self.config`."""
        if args is not None and len(sys.argv) > 1:
            rank_zero_warn(
                "LightningCLI got both `args` and command-line arguments; it parses `args` only. Command line "
                f"sys.argv[1:]={sys.argv[1:]}, args={args}."
            )
        if isinstance(args, (dict, Namespace)):
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(args)

    def _parse_ckpt_path(self) -> None:
        """With `--ckpt_path` to a file, the checkpoint's module hyperparameters become the `model` config."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def _dump_config(self) -> None:
        if hasattr(self, "config_dump"):
            return
        dumped = self.parser.dump(self.config, skip_link_targets=False, skip_none=False, format="yaml")
        self.config_dump = yaml.safe_load(dumped)
        if "subcommand" in self.config:
            self.config_dump = self.config_dump[self.config.subcommand]

    # --------------------------------------------------------------------------------------------- instantiation
    def before_instantiate_classes(self) -> None:
        """Override to run code after parsing, before the classes are built."""

    def instantiate_classes(self) -> None:
        """Build the classes: `config_init`, `datamodule`, `model` and `trainer`."""
        self.config_init = self.parser.instantiate_classes(self.config)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self._add_configure_optimizers_method_to_model(self.subcommand)
        self.trainer = self.instantiate_trainer()

    def after_instantiate_classes(self) -> None:
        """Override to run code after the classes are built."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Build the Trainer from its config (and `kwargs`), with the configured callbacks and the config saver."""
        extra_callbacks = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        return self._instantiate_trainer(config, extra_callbacks)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Trainer:
        if "callbacks" not in config:
            rank_zero_warn(f"The `{self.trainer_class.__qualname__}` class does not expose the `callbacks` argument "
                           "so they will not be included.")
            return self.trainer_class(**config)
        given = config["callbacks"]
        config["callbacks"] = [] if given is None else list(given) if isinstance(given, list) else [given]
        config["callbacks"].extend(callbacks)
        if "callbacks" in self.trainer_defaults:
            value = self.trainer_defaults["callbacks"]
            config["callbacks"] += value if isinstance(value, list) else [value]
        if self.save_config_callback and not config.get("fast_dev_run", False):
            config["callbacks"].append(self.save_config_callback(
                self._parser(self.subcommand), self.config.get(str(self.subcommand), self.config),
                **self.save_config_kwargs))
        return self.trainer_class(**config)

    def _parser(self, subcommand: str | None) -> LightningArgumentParser:
        return self.parser if subcommand is None else self._subcommand_parsers[subcommand]

    @staticmethod
    def configure_optimizers(lightning_module: LightningModule, optimizer: Optimizer,
                             lr_scheduler: LRSchedulerTypeUnion | None = None) -> Any:
        """What the injected `configure_optimizers` returns; override to change it."""
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, ReduceLROnPlateau):
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": lr_scheduler, "monitor": lr_scheduler.monitor}}
        return [optimizer], [lr_scheduler]

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        """With one AUTOMATIC optimizer group given (and at most one scheduler), replace the module's
        `configure_optimizers` by one building them."""
        if not self.auto_configure_optimizers:
            return
        parser = self._parser(subcommand)
        optimizers = _automatic_keys(parser._optimizers, (Optimizer,))
        lr_schedulers = _automatic_keys(parser._lr_schedulers, LRSchedulerTypeTuple)
        if not optimizers:
            return
        if len(optimizers) > 1 or len(lr_schedulers) > 1:
            raise MisconfigurationException(
                f"`{type(self).__name__}` can build `configure_optimizers` from at most one optimizer and one "
                f"lr_scheduler group added as 'AUTOMATIC', found {optimizers + lr_schedulers}. Link the groups with "
                "`link_to=...` and implement `configure_optimizers` in the module instead."
            )
        optimizer_init = self._get(self.config_init, optimizers[0])
        optimizer_class = parser._optimizers[optimizers[0]][0]
        if not isinstance(optimizer_class, tuple):
            optimizer_init = with_class_path(optimizer_class, optimizer_init)
        if not optimizer_init:
            return  # the default group exists but no optimizer was given
        lr_scheduler_init = None
        if lr_schedulers:
            lr_scheduler_init = self._get(self.config_init, lr_schedulers[0])
            scheduler_class = parser._lr_schedulers[lr_schedulers[0]][0]
            if not isinstance(scheduler_class, tuple):
                lr_scheduler_init = with_class_path(scheduler_class, lr_scheduler_init)
        if is_overridden("configure_optimizers", self.model, LightningModule):
            rank_zero_warn(f"`{type(self.model).__name__}.configure_optimizers` will be overridden by "
                           f"`{type(self).__name__}.configure_optimizers`.")
        optimizer = instantiate_class(self.model.parameters(), optimizer_init)
        lr_scheduler = instantiate_class(optimizer, lr_scheduler_init) if lr_scheduler_init else None
        fn = partial(self.configure_optimizers, optimizer=optimizer, lr_scheduler=lr_scheduler)
        update_wrapper(fn, self.configure_optimizers)  # so overridden-checks see a function of the CLI
        self.model.configure_optimizers = MethodType(fn, self.model)

    # ---------------------------------------------------------------------------------------------------- running
    def _get(self, config: Namespace, key: str, default: Any = None) -> Any:
        """`key` of `config`, inside the subcommand's part when there is one."""
        return config.get(str(self.subcommand), config).get(key, default)

    def _run_subcommand(self, subcommand: str) -> None:
        before = getattr(self, f"before_{subcommand}", None)
        if callable(before):
            before()
        fn = getattr(self, subcommand, getattr(self.trainer, subcommand))
        fn(**self._prepare_subcommand_kwargs(subcommand))
        after = getattr(self, f"after_{subcommand}", None)
        if callable(after):
            after()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = {k: v for k, v in self.config_init[subcommand].items()
                  if k in self._subcommand_method_arguments[subcommand]}
        kwargs["model"] = self.model
        if self.datamodule is not None:
            kwargs["datamodule"] = self.datamodule
        return kwargs

    def _set_seed(self) -> None:
        seed = self._get(self.config, "seed_everything")
        if seed is False:
            return
        # True: seed_everything() picks it (PL_GLOBAL_SEED, else 0, as Lightning); the seed used goes into the
        # config, so the saved config.yaml reproduces the run.
        seed = seed_everything(workers=True) if seed is True else seed_everything(seed, workers=True)
        (self.config[self.subcommand] if self.subcommand else self.config)["seed_everything"] = seed


def _automatic_keys(register: dict[str, tuple[Any, str]], base: tuple[type, ...]) -> list[str]:
    keys = []
    for key, (class_type, link_to) in register.items():
        classes = class_type if isinstance(class_type, tuple) else (class_type,)
        if link_to == "AUTOMATIC" and any(issubclass(c, base) for c in classes):
            keys.append(key)
    return keys


def _short_description(component: object) -> str | None:
    if component.__doc__ is None:
        return None
    import docstring_parser

    try:
        return docstring_parser.parse(component.__doc__).short_description
    except (ValueError, docstring_parser.ParseError) as error:
        rank_zero_warn(f"Failed parsing docstring for {component}: {error}")
        return None

