"""What the port command knows: what fulmen provides (asked of fulmen itself, so the answers stay true as fulmen
grows) and the Lightning 1.x -> 2.x migration hints that explain a missing name or argument.

Owns: lookups of fulmen names, signatures and accepted flag values; the hint tables. Does not own: reading code.
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MISSING = object()

# Lightning's name for a dotted path -> "pytorch" (has a fulmen twin `fulmen.<rest>`), "fabric" or "other".
_FABRIC_ROOTS = ("lightning.fabric", "lightning_fabric", "lightning.Fabric", "lightning.lite", "pytorch_lightning.lite")
_OTHER_UMBRELLA = ("app", "data", "store", "__about__")


@dataclass(frozen=True)
class Finding:
    """One line of the port report, printed like a linter's: `path:line:col: [tag] message`."""

    path: str
    line: int
    col: int
    tag: str  # "unsupported" (fulmen lacks it), "removed" (gone since Lightning 2.0), "differs", "error"
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: [{self.tag}] {self.message}"


def classify(dotted: str) -> tuple[str, str] | None:
    """`("pytorch", rest)` for a `lightning.pytorch`/`pytorch_lightning`/`lightning` path (rest: the path below
    the package, "" for the package), `("fabric"|"other", dotted)` for Lightning parts fulmen does not provide,
    None for anything else."""
    for root in ("lightning.pytorch", "pytorch_lightning"):
        if dotted == root or dotted.startswith(root + "."):
            if dotted.startswith(("pytorch_lightning.lite", "pytorch_lightning.metrics")):
                return ("fabric" if ".lite" in dotted else "other"), dotted
            return "pytorch", dotted[len(root) + 1:]
    if any(dotted == root or dotted.startswith(root + ".") for root in _FABRIC_ROOTS):
        return "fabric", dotted
    if dotted == "lightning":
        return "pytorch", ""
    if dotted.startswith("lightning."):
        first = dotted.split(".")[1]
        # `import lightning as L` re-exports the Trainer side's top-level names (`L.Trainer`, `L.seed_everything`).
        return ("other", dotted) if first in _OTHER_UMBRELLA else ("pytorch", dotted[len("lightning."):])
    return None


@lru_cache(maxsize=None)
def lookup(rest: str) -> Any:
    """The fulmen object at `fulmen.<rest>` (importing submodules on the way), MISSING if there is none, or None
    when an optional package that module needs is not installed (then nothing can be said)."""
    obj: Any = importlib.import_module("fulmen")
    for part in [p for p in rest.split(".") if p]:
        try:
            obj = getattr(obj, part)
            continue
        except AttributeError:
            if not inspect.ismodule(obj):
                return MISSING
        name = f"{obj.__name__}.{part}"
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name and (error.name == name or error.name.startswith("fulmen")):
                return MISSING
            return None
        except ImportError:
            return None
    return obj


def module_exists(rest: str) -> bool:
    return inspect.ismodule(lookup(rest)) if lookup(rest) is not None else True


# Lightning 1.x names that moved or were renamed by 2.0: old -> new path below the package. Shown only when
# fulmen has the new path.
RENAMED_NAMES = {
    "PrecisionPlugin": "plugins.precision.Precision", "MixedPrecisionPlugin": "plugins.precision.MixedPrecision",
    "NativeMixedPrecisionPlugin": "plugins.precision.MixedPrecision",
    "DoublePrecisionPlugin": "plugins.precision.DoublePrecision",
    "HalfPrecisionPlugin": "plugins.precision.HalfPrecision",
    "FSDPPrecisionPlugin": "plugins.precision.FSDPPrecision",
    "FSDPMixedPrecisionPlugin": "plugins.precision.FSDPPrecision",
    "DDPSpawnStrategy": "strategies.DDPStrategy", "DDPPlugin": "strategies.DDPStrategy",
    "DDPFullyShardedStrategy": "strategies.FSDPStrategy", "DDPFullyShardedNativeStrategy": "strategies.FSDPStrategy",
    "DDPShardedStrategy": "strategies.FSDPStrategy", "TrainingTypePlugin": "strategies.Strategy",
    "GPUAccelerator": "accelerators.CUDAAccelerator", "LightningLoggerBase": "loggers.Logger",
    "ProgressBar": "callbacks.TQDMProgressBar", "ProgressBarBase": "callbacks.ProgressBar",
}
RENAMED_MODULES = {
    "utilities.cli": "cli", "core.lightning": "core.module", "loggers.base": "loggers.logger",
    "callbacks.base": "callbacks.callback", "plugins.training_type": "strategies", "profiler": "profilers",
    "trainer.supporters": "utilities.combined_loader", "utilities.distributed": "utilities.rank_zero",
    "core.memory": "utilities.model_summary", "callbacks.progress.base": "callbacks.progress.progress_bar",
}
# Integrations fulmen does not provide: (words in the name or value, reason, fix).
NOT_PROVIDED = (
    (("deepspeed",), "DeepSpeed is not provided by fulmen",
     "use strategy='fsdp' (shards parameters, gradients and optimizer state like ZeRO stage 3) or 'ddp'"),
    (("xla", "tpu"), "XLA/TPU is not provided by fulmen", "train on CUDA, MPS or CPU (accelerator='auto')"),
    (("hpu", "habana"), "Habana HPUs are not provided by fulmen", "train on CUDA, MPS or CPU (accelerator='auto')"),
    (("ipu",), "IPUs were removed in Lightning 2.0", "train on CUDA, MPS or CPU (accelerator='auto')"),
    (("bitsandbytes",), "bitsandbytes quantization is not provided by fulmen",
     "quantize the layers with bitsandbytes yourself in `configure_model`, or use precision='bf16-true'"),
    (("transformer_engine", "transformer-engine", "transformerengine"),
     "NVIDIA Transformer Engine precision is not provided by fulmen", "use precision='bf16-mixed'"),
    (("tensorrt",), "`to_tensorrt` is not provided by fulmen (it needs torch-tensorrt on CUDA)",
     "export with `model.to_onnx(...)` or `model.to_torchscript()`, or call `torch_tensorrt.compile(model, ...)`"),
    (("horovod", "bagua", "colossalai", "hivemind"), "this strategy was removed from Lightning 2.0",
     "use strategy='ddp' or 'fsdp'"),
    (("sharded", "fairscale"), "FairScale sharding was removed in Lightning 2.0", "use strategy='fsdp'"),
    (("ddp2",), "strategy 'ddp2' was removed in Lightning 2.0", "use strategy='ddp'"),
    (("pytorch_lightning.metrics",), "`pytorch_lightning.metrics` moved to the torchmetrics package",
     "`pip install torchmetrics` and import from `torchmetrics`"),
)
FABRIC_REASON = ("`lightning.fabric` is not provided: fulmen is the `lightning.pytorch` half only, so this stays on "
                 "Lightning. Fix: keep Lightning installed for it, or move the Fabric loop into a LightningModule "
                 "trained by `fulmen.Trainer`")


def _word_runs(text: str) -> set[str]:
    """Lower-case words of a name and runs of up to three of them joined: "DeepSpeedStrategy" -> deep, speed,
    deepspeed, ...; so "tpu" matches `single_tpu` but not `_PREDICT_OUTPUT`."""
    words = [word.lower() for word in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", text)]
    return {"".join(words[start:start + size]) for size in (1, 2, 3) for start in range(len(words))}


def not_provided_reason(text: str) -> str | None:
    runs = _word_runs(text)
    for words, reason, fix in NOT_PROVIDED:
        if any(re.sub(r"[^a-z0-9]", "", word) in runs for word in words):
            return f"{reason}. Fix: {fix}."
    return None


def explain_missing(lightning_path: str, rest: str) -> tuple[str, str]:
    """(tag, message) for a Lightning path whose fulmen twin `fulmen.<rest>` does not exist."""
    name = rest.rsplit(".", 1)[-1]
    new = RENAMED_NAMES.get(name)
    if new is not None and lookup(new) not in (MISSING, None):
        return "removed", f"`{lightning_path}` is Lightning 1.x's name. Fix: use `fulmen.{new}`."
    for old, new in RENAMED_MODULES.items():
        if rest == old or rest.startswith(old + "."):
            moved = new + rest[len(old):]
            if lookup(moved) not in (MISSING, None):
                return "removed", f"`{lightning_path}` moved in Lightning 2.0. Fix: use `fulmen.{moved}`."
    kind = classify(lightning_path)
    if kind is not None and kind[0] == "fabric":
        return "unsupported", f"`{lightning_path}`: {FABRIC_REASON}."
    reason = not_provided_reason(lightning_path)
    if reason is not None:
        return "unsupported", f"`{lightning_path}`: {reason}"
    parts = rest.split(".")
    for cut in range(len(parts) - 2, -1, -1):  # fulmen's packages export what Lightning's submodules define
        nearer = ".".join(parts[:cut] + parts[-1:])
        found = lookup(nearer) if kind is not None and kind[0] == "pytorch" else None
        if found not in (MISSING, None) and not inspect.ismodule(found):
            return "unsupported", (f"`{lightning_path}`: fulmen has no `fulmen.{rest}`. Fix: import it from "
                                   f"`fulmen.{nearer}`.")
    if kind is not None and kind[0] == "other":
        return "unsupported", (f"`{lightning_path}` is not part of `lightning.pytorch` and fulmen does not provide "
                               "it. Fix: keep Lightning installed for it.")
    return "unsupported", (f"`{lightning_path}` has no fulmen twin (`fulmen.{rest}` does not exist). Fix: use the "
                           "Lightning 2.x name; fulmen mirrors `lightning.pytorch` 2.6.")


# Trainer arguments Lightning 2.0 removed -> what to write instead (shown when fulmen's Trainer lacks them).
REMOVED_TRAINER_ARGS = {
    "gpus": "use `accelerator='gpu', devices=N`", "tpu_cores": "TPUs are not provided; use `devices=N`",
    "ipus": "IPUs are not provided; use `devices=N`", "num_processes": "use `accelerator='cpu', devices=N`",
    "auto_select_gpus": "use `devices='auto'` or `fulmen.accelerators.find_usable_cuda_devices(N)`",
    "resume_from_checkpoint": "pass `ckpt_path=...` to `trainer.fit(...)`",
    "auto_lr_find": "call `fulmen.tuner.Tuner(trainer).lr_find(model)` before `fit`",
    "auto_scale_batch_size": "call `fulmen.tuner.Tuner(trainer).scale_batch_size(model)` before `fit`",
    "track_grad_norm": "log `fulmen.utilities.grad_norm(self, norm_type=2)` in `on_before_optimizer_step`",
    "replace_sampler_ddp": "use `use_distributed_sampler=`", "amp_backend": "remove it (torch.amp is used)",
    "amp_level": "remove it (apex was removed); choose `precision=`",
    "move_metrics_to_cpu": "remove it", "multiple_trainloader_mode": "wrap the loaders in "
    "`fulmen.utilities.CombinedLoader(loaders, mode=...)`",
    "weights_save_path": "use `ModelCheckpoint(dirpath=...)`",
    "flush_logs_every_n_steps": "set it on the logger (e.g. `CSVLogger(flush_logs_every_n_steps=...)`)",
    "progress_bar_refresh_rate": "pass `callbacks=[TQDMProgressBar(refresh_rate=...)]`",
    "process_position": "pass `callbacks=[TQDMProgressBar(process_position=...)]`",
    "stochastic_weight_avg": "pass `callbacks=[StochasticWeightAveraging(swa_lrs=...)]`",
    "terminate_on_nan": "use `detect_anomaly=True`, or check the loss in `on_before_backward`",
    "prepare_data_per_node": "set `self.prepare_data_per_node` on the LightningModule or DataModule",
    "reload_dataloaders_every_epoch": "use `reload_dataloaders_every_n_epochs=1`",
    "checkpoint_callback": "use `enable_checkpointing=`", "weights_summary": "use `enable_model_summary=` or a "
    "`ModelSummary(max_depth=...)` callback", "log_gpu_memory": "pass `callbacks=[DeviceStatsMonitor()]`",
    "truncated_bptt_steps": "split the sequence yourself in `training_step` (manual optimization)",
    "distributed_backend": "use `strategy=`", "automatic_optimization": "set `self.automatic_optimization` "
    "on the LightningModule",
}
# Trainer method arguments and members Lightning 2.0 removed or renamed.
REMOVED_TRAINER_MEMBERS = {
    "train_dataloader": "use `train_dataloaders=`", "test_dataloaders": "use `dataloaders=`",
    "val_dataloaders": "use `dataloaders=` (`trainer.validate`)", "predict_dataloaders": "use `dataloaders=`",
    "tune": "use `fulmen.tuner.Tuner(trainer).lr_find(model)` / `.scale_batch_size(model)`",
    "training_type_plugin": "use `trainer.strategy`", "progress_bar_dict": "use `trainer.progress_bar_metrics`",
    "gpus": "use `trainer.num_devices`", "data_parallel_device_ids": "use `trainer.device_ids`",
    "root_gpu": "use `trainer.strategy.root_device`", "lr_schedulers": "use `trainer.lr_scheduler_configs`",
    "train_loop": "use `trainer.fit_loop`", "weights_save_path": "use `ModelCheckpoint(dirpath=...)`",
    "from_argparse_args": "use `fulmen.cli.LightningCLI`, or build `Trainer(**vars(args))` yourself",
    "add_argparse_args": "use `fulmen.cli.LightningCLI`", "use_amp": "read `trainer.precision`",
    "resume_from_checkpoint": "pass `ckpt_path=` to `fit`",
}
# LightningModule / Callback members Lightning 2.0 removed (shown when fulmen's class lacks them).
REMOVED_MEMBERS = {
    "on_pretrain_routine_start": "move its code to `on_fit_start`",
    "on_pretrain_routine_end": "move its code to `on_fit_start`",
    "on_init_start": "move its code to the callback's `__init__`", "on_init_end": "move its code to `setup`",
    "on_keyboard_interrupt": "use `on_exception` and check `isinstance(exception, KeyboardInterrupt)`",
    "on_configure_sharded_model": "move its code to the module's `configure_model`",
    "on_before_accelerator_backend_setup": "move its code to `setup`",
    "on_hpc_save": "use `on_save_checkpoint`", "on_hpc_load": "use `on_load_checkpoint`",
    "get_progress_bar_dict": "override the progress bar's `get_metrics(trainer, pl_module)`",
    "on_train_dataloader": "move its code to `train_dataloader`",
    "on_val_dataloader": "move its code to `val_dataloader`",
    "on_test_dataloader": "move its code to `test_dataloader`",
    "on_predict_dataloader": "move its code to `predict_dataloader`",
    "on_post_move_to_device": "remove it (weights stay tied when moved)",
    "tbptt_split_batch": "split the sequence yourself in `training_step` (manual optimization)",
    "summarize": "use `fulmen.utilities.model_summary.ModelSummary(model)`",
    "to_tensorrt": "export with `model.to_onnx(...)` or `model.to_torchscript()`, or call "
                   "`torch_tensorrt.compile(model, ...)` (to_tensorrt needs torch-tensorrt on CUDA)",
    "use_amp": "read `self.trainer.precision`", "on_gpu": "check `self.device.type == 'cuda'`",
    "truncated_bptt_steps": "split the sequence yourself in `training_step` (manual optimization)",
    "model_size": "use `ModelSummary(model).model_size`",
}
# Hook arguments Lightning 2.0 removed: parameter name -> (the hooks it was removed from, empty: all; what to do).
_EPOCH_ENDS = ("on_train_epoch_end", "on_validation_epoch_end", "on_test_epoch_end", "on_predict_epoch_end")
_NEW_OPTIMIZER_STEP = "`optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)` is the 2.x signature"
REMOVED_HOOK_ARGUMENTS = {
    "optimizer_idx": ((), "Lightning 2.0 removed `optimizer_idx`: with several optimizers set "
                          "`self.automatic_optimization = False` and step each one in `training_step` "
                          "(`opt_a, opt_b = self.optimizers()`)"),
    "dataloader_idx": (("on_train_batch_start", "on_train_batch_end", "training_step"),
                       "the training batch hooks no longer get `dataloader_idx`; remove the argument"),
    "outputs": (_EPOCH_ENDS, "epoch-end hooks no longer get `outputs`: collect step outputs in a list on the module"),
    "results": (_EPOCH_ENDS, "epoch-end hooks no longer get `results`: collect the predictions in a list on the "
                             "module"),
    "callback_state": (("on_load_checkpoint",), "`on_load_checkpoint` now gets the whole checkpoint: keep the "
                                                "callback's state in `state_dict()`/`load_state_dict(state_dict)`"),
    "using_native_amp": (("optimizer_step",), _NEW_OPTIMIZER_STEP),
    "on_tpu": (("optimizer_step",), _NEW_OPTIMIZER_STEP),
    "using_lbfgs": (("optimizer_step",), _NEW_OPTIMIZER_STEP),
}


def removed_hook_message(class_name: str, hook: str) -> tuple[str, bool] | None:
    """fulmen's own message for a hook Lightning 2.0 removed and whether fulmen refuses a model defining it; None
    for a hook that was not removed."""
    from fulmen.trainer.hook_events import REMOVED_HOOKS
    from fulmen.trainer.step_signatures import check_removed_hooks

    if hook not in REMOVED_HOOKS:
        return None
    probe = type(class_name, (), {hook: lambda self: None})()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            check_removed_hooks(probe)
        except NotImplementedError as error:
            return str(error), True
    return (str(caught[0].message) if caught else f"`{class_name}.{hook}` was removed in Lightning 2.0."), False


def trainer_flag_problem(name: str, value: Any) -> str | None:
    """Why fulmen refuses `Trainer(name=value)` for a constant value, with the fix; None when it accepts it."""
    from fulmen.precision import _ALIASES, PRECISION_NAMES
    from fulmen.strategies import select
    from fulmen.trainer import config

    if name == "strategy" and isinstance(value, str):
        known = ("auto", "single_device", *select._DDP_NAMES, *select._FSDP_NAMES)
        if value in known:
            return None
        return not_provided_reason(value) or (
            "'dp' (DataParallel) was removed in Lightning 2.0. Fix: use strategy='ddp'." if value == "dp" else
            f"fulmen knows no strategy {value!r}. Fix: use one of {', '.join(known[:6])}, ... or a Strategy.")
    if name == "accelerator" and isinstance(value, str):
        if value.lower() in select.ACCELERATORS:
            return None
        if trainer_flag_problem("strategy", value) is None:
            return f"Lightning 1.x took the strategy here. Fix: use `strategy={value!r}`."
        return not_provided_reason(value) or (f"fulmen knows no accelerator {value!r}. Fix: use one of "
                                              f"{', '.join(select.ACCELERATORS)}.")
    if name == "precision" and isinstance(value, (str, int)) and not isinstance(value, bool):
        if str(value) in PRECISION_NAMES or str(value) in _ALIASES:
            return None
        return not_provided_reason(str(value)) or (f"fulmen knows no precision {value!r}. Fix: use one of "
                                                   f"{', '.join(PRECISION_NAMES)}.")
    if name == "profiler" and isinstance(value, str) and value not in config._PROFILERS:
        return f"fulmen knows no profiler {value!r}. Fix: use one of {', '.join(config._PROFILERS)}, or a Profiler."
    if name in config._NOT_YET and value is not None:
        try:
            config.reject_unimplemented(**{name: value})
        except NotImplementedError as error:
            return str(error)
    return None


def call_parameters(obj: Any) -> inspect.Signature | None:
    """The signature to check a call's keywords against, or None when it takes `**kwargs` or has none."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return signature
