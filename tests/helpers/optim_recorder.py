"""Framework-agnostic recorder of optimizer / scheduler / accumulation / clipping behaviour.

Everything is built on the framework namespace ``L`` passed in; only ``L.LightningModule``,
``L.Trainer`` and ``L.Callback`` are used, so the same scenarios run against two frameworks
and their results can be compared event for event.

``run_optim_scenario(L, name, root_dir)`` returns a JSON-able dict:

* ``events``: short strings in the order they happened during ``fit``:

  - ``batch_start e0 b0 gs0``   Callback ``on_train_batch_start`` (epoch, batch_idx, global_step)
  - ``train_step e0 b0``        every ``training_step`` call (LBFGS: once per closure evaluation)
  - ``optimizer_step e0 b0``    an overridden ``LightningModule.optimizer_step`` was entered
  - ``toggle 0 rg=1100``        (manual) ``requires_grad`` of every parameter after ``toggle_optimizer``
  - ``untoggle 0 rg=1111``      (manual) the same after ``untoggle_optimizer``
  - ``zero_grad``               the torch optimizer's ``zero_grad`` ran (``zero_grad[i]`` with several)
  - ``backward``                Callback ``on_after_backward``
  - ``grad_norm_before_step X`` Callback ``on_before_optimizer_step``: total grad 2-norm of the module
  - ``grad_norm_at_step X``     inside the torch optimizer's ``step``, once gradients are final
                                (after each closure evaluation, or on entry when no closure is
                                given), i.e. after any clipping
  - ``opt_step SGD``            a torch optimizer step completed (``SGD[i]`` with several)
  - ``sched_step StepLR``       a scheduler's ``step`` ran (``metric=X`` when one was passed)
  - ``global_step N``           Callback ``on_train_batch_end``: ``trainer.global_step``
  - ``lr_at_batch_end 0.1``     ``param_groups[0]["lr"]`` of each optimizer (space-separated)
  - ``val_end e0 gs3``          Callback ``on_validation_end``
  - ``lr_scheduler_step StepLR metric=None``  an overridden ``LightningModule.lr_scheduler_step``
  - ``estimated_stepping_batches N``  ``trainer.estimated_stepping_batches`` read in
                                ``configure_optimizers`` (OneCycleLR scenario)
  - ``epoch_end e0 gs3``        Callback ``on_train_epoch_end``, followed by
  - ``lr_at_epoch_end 0.05``

  Grad norms are ``none`` when no parameter has a gradient.

* ``final_global_step``, ``final_current_epoch``: the trainer's counters after ``fit``.
* ``final_params``: every parameter of the module flattened, in ``parameters()`` order.
* ``final_lrs``: ``param_groups[0]["lr"]`` of each optimizer after ``fit``.
* ``error`` (only when ``fit`` raised): the exception's class name; events stop there.

Floats are rounded to 6 places (learning rates to 8; the ``bf16_mixed`` scenario rounds
params and grad norms to 3).

How the instrumentation works: ``configure_optimizers`` calls the scenario's builder, then --
before the framework sees the result -- patches ``step`` on the *instance* of every torch
optimizer and every scheduler found in it.  Schedulers were created first, so the
optimizer-step wrapper sits outside torch's own scheduler bookkeeping wrapper (which calls the
class's ``step`` directly, bypassing anything defined on a subclass) and counts each real call
of ``optimizer.step`` exactly once.  ``zero_grad`` is overridden on a one-off subclass that the
optimizer is switched to (same class name), because a wrapper that imitates the optimizer's
class reaches ``zero_grad`` through its own MRO, never through the wrapped instance.

Model and data are deterministic: ``Linear(4, 3) -> ReLU -> Linear(3, 1)`` with weights drawn
from a seeded ``torch.Generator``; regression data from another generator, never shuffled;
MSE loss.  Data sizes per scenario are ``(num_samples, batch_size)``; the default ``(10, 4)``
gives batches of 4, 4, 2.
"""

import math
import types

import torch
from torch.utils.data import DataLoader, TensorDataset

IN_FEATURES = 4
HIDDEN = 3
WEIGHT_SEED = 7
TRAIN_SEED = 11
VAL_SEED = 22
LR = 0.1
ROUND = 6
LR_ROUND = 8


def _fmt(value, digits=ROUND):
    return repr(round(float(value), digits))


def _loader(num_samples, batch_size, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, IN_FEATURES, generator=gen)
    y = torch.randn(num_samples, 1, generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def _grad_norm(module, digits):
    grads = [p.grad.detach().double() for p in module.parameters() if p.grad is not None]
    if not grads:
        return "none"
    return _fmt(math.sqrt(sum(float((g * g).sum()) for g in grads)), digits)


def _is_optimizer(obj):
    return isinstance(obj, torch.optim.Optimizer)


def _is_scheduler(obj):
    return not _is_optimizer(obj) and hasattr(obj, "optimizer") and callable(getattr(obj, "step", None))


def _walk(config, found):
    """Collect (optimizers, schedulers) from whatever ``configure_optimizers`` returned."""
    if _is_optimizer(config):
        found[0].append(config)
    elif _is_scheduler(config):
        found[1].append(config)
    elif isinstance(config, dict):
        for value in config.values():
            _walk(value, found)
    elif isinstance(config, (list, tuple)):
        for value in config:
            _walk(value, found)
    return found


# ---------------------------------------------------------------------------
# optimizer configurations: fn(module) -> what configure_optimizers returns


def _sgd(m, params=None):
    return torch.optim.SGD(m.parameters() if params is None else params, lr=LR)


def _opt_single(m):
    return _sgd(m)


def _opt_list_of_one(m):
    return [_sgd(m)]


def _opt_two_lists_steplr(m):
    opt = _sgd(m)
    return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]


def _opt_dict_step_interval(m):
    opt = _sgd(m)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _opt_dict_frequency_2(m):
    opt = _sgd(m)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch", "frequency": 2}}


def _opt_step_frequency_3(m):
    opt = _sgd(m)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 3}}


def _plateau(monitor):
    def build(m):
        opt = _sgd(m)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=0, factor=0.5)
        config = {"scheduler": sched}
        if monitor is not None:
            config["monitor"] = monitor
        return {"optimizer": opt, "lr_scheduler": config}

    return build


def _opt_none(m):
    return None


def _opt_two_sgd(m):
    return [_sgd(m, m.layer1.parameters()), _sgd(m, m.layer2.parameters())]


def _opt_manual_two_with_steplr(m):
    opt0, opt1 = _opt_two_sgd(m)
    return [opt0, opt1], [torch.optim.lr_scheduler.StepLR(opt0, step_size=1, gamma=0.5)]


def _opt_lbfgs(m):
    return torch.optim.LBFGS(m.parameters(), lr=0.1, max_iter=3)


def _plateau_step(monitor, strict=True):
    def build(m):
        opt = _sgd(m)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=0, factor=0.5)
        config = {"scheduler": sched, "monitor": monitor, "interval": "step"}
        if not strict:
            config = dict(config, interval="epoch", strict=False)
        return {"optimizer": opt, "lr_scheduler": config}

    return build


def _opt_two_schedulers(m):
    opt = _sgd(m)
    return [opt], [
        torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
        {"scheduler": torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9), "interval": "step"},
    ]


def _opt_dict_only(m):
    return {"optimizer": _sgd(m)}


def _opt_list_of_one_dict(m):
    opt = _sgd(m)
    return [{"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}]


def _opt_onecycle(m):
    total = m.trainer.estimated_stepping_batches
    m.events.append(f"estimated_stepping_batches {total}")
    opt = _sgd(m)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.15, total_steps=int(total))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ---------------------------------------------------------------------------
# per-scenario training_step extras: fn(module, batch_idx)


def _log_val_loss_rising(m, batch_idx):
    m.log("val_loss", float(m.current_epoch))  # 0, 1, 2, ...: never improves after epoch 0


_TRAIN_METRIC = (1.0, 0.5, 0.7, 0.8, 0.3, 0.6)


def _log_train_epoch_metric(m, batch_idx):
    m.log("train_m", _TRAIN_METRIC[m.current_epoch], on_step=False, on_epoch=True)


_STEP_METRIC = (2.0, 1.0, 1.5)


def _log_train_step_metric(m, batch_idx):
    m.log("step_m", _STEP_METRIC[batch_idx % 3], on_step=True, on_epoch=False)


# ---------------------------------------------------------------------------
# scenarios

# spec keys:
#   optim: fn(module) -> configure_optimizers result     trainer: extra Trainer kwargs
#   data: (num_samples, batch_size) of the train loader   val: add a validation loader (4 samples)
#   train_log / val_log: fn(module, batch_idx) called in training_step / validation_step
#   none_at: training_step returns None at this batch_idx
#   manual: manual optimization over two optimizers        even_step_only: optimizer_step override
#   custom_lr_scheduler_step: record (then do) LightningModule.lr_scheduler_step
#   digits: rounding of params and grad norms

OPTIM_SCENARIOS = {
    "single_sgd": dict(optim=_opt_single, trainer=dict(max_epochs=2)),
    "list_of_one": dict(optim=_opt_list_of_one, trainer=dict(max_epochs=2)),
    "two_lists_steplr": dict(optim=_opt_two_lists_steplr, trainer=dict(max_epochs=3)),
    "dict_step_interval": dict(optim=_opt_dict_step_interval, trainer=dict(max_epochs=2)),
    "dict_frequency_2": dict(optim=_opt_dict_frequency_2, data=(12, 4), trainer=dict(max_epochs=4)),
    # 7 batches, accumulate 2 -> optimizer steps at batch_idx 1, 3, 5, 6 of each epoch; frequency 3
    # (which of them steps the scheduler tells batch-in-epoch, total-batch and global-step counting apart)
    "step_interval_frequency_3": dict(
        optim=_opt_step_frequency_3, data=(14, 2), trainer=dict(max_epochs=2, accumulate_grad_batches=2)
    ),
    "plateau_val": dict(
        optim=_plateau("val_loss"), val=True, val_log=_log_val_loss_rising, trainer=dict(max_epochs=4)
    ),
    "plateau_train_epoch_metric": dict(
        optim=_plateau("train_m"), train_log=_log_train_epoch_metric, trainer=dict(max_epochs=4)
    ),
    "none_optimizer": dict(optim=_opt_none, trainer=dict(max_epochs=2)),
    # 5 batches of 2, accumulate 3 -> steps at batch_idx 2 and 4
    "accumulate_3": dict(
        optim=_opt_single, data=(10, 2), trainer=dict(max_epochs=2, accumulate_grad_batches=3)
    ),
    "clip_norm": dict(optim=_opt_single, trainer=dict(max_epochs=2, gradient_clip_val=0.01)),
    "clip_value": dict(
        optim=_opt_single, trainer=dict(max_epochs=2, gradient_clip_val=0.001, gradient_clip_algorithm="value")
    ),
    "training_step_none": dict(optim=_opt_single, data=(12, 4), none_at=1, trainer=dict(max_epochs=2)),
    "max_steps_mid_epoch": dict(optim=_opt_single, data=(12, 4), trainer=dict(max_steps=4)),
    "manual_two_optimizers": dict(optim=_opt_manual_two_with_steplr, manual=True, trainer=dict(max_epochs=2)),
    "lbfgs": dict(optim=_opt_lbfgs, data=(12, 4), trainer=dict(max_epochs=1)),
    "custom_optimizer_step": dict(optim=_opt_single, even_step_only=True, trainer=dict(max_epochs=2)),
    "bf16_mixed": dict(optim=_opt_single, digits=3, trainer=dict(max_epochs=2, precision="bf16-mixed")),
    # more configuration shapes and scheduler placement
    "dict_optimizer_only": dict(optim=_opt_dict_only, trainer=dict(max_epochs=2)),
    "list_of_one_dict": dict(optim=_opt_list_of_one_dict, trainer=dict(max_epochs=2)),
    "two_schedulers": dict(optim=_opt_two_schedulers, trainer=dict(max_epochs=2)),
    "steplr_with_val": dict(optim=_opt_two_lists_steplr, val=True, trainer=dict(max_epochs=2)),
    # a step-interval plateau scheduler monitoring a per-step metric
    "plateau_step_interval": dict(
        optim=_plateau_step("step_m"),
        data=(12, 4),
        train_log=_log_train_step_metric,
        trainer=dict(max_epochs=2),
    ),
    # strict=False: a missing monitor only warns and the scheduler is skipped
    "plateau_unknown_monitor_not_strict": dict(
        optim=_plateau_step("not_logged", strict=False), trainer=dict(max_epochs=2)
    ),
    # val_loss does not exist yet when epoch 0 ends
    "plateau_val_every_2_epochs": dict(
        optim=_plateau("val_loss"),
        val=True,
        val_log=_log_val_loss_rising,
        trainer=dict(max_epochs=4, check_val_every_n_epoch=2),
    ),
    "custom_lr_scheduler_step": dict(
        optim=_opt_dict_step_interval, custom_lr_scheduler_step=True, trainer=dict(max_epochs=1)
    ),
    "accumulate_clip_norm": dict(
        optim=_opt_single,
        data=(10, 2),
        trainer=dict(max_epochs=1, accumulate_grad_batches=2, gradient_clip_val=0.5),
    ),
    # OneCycleLR sized from trainer.estimated_stepping_batches (accumulation counted)
    "onecycle_estimated_steps": dict(
        optim=_opt_onecycle, data=(10, 2), trainer=dict(max_epochs=2, accumulate_grad_batches=2)
    ),
    # misconfigurations: the exception class name is recorded
    "two_optimizers_automatic_error": dict(optim=_opt_two_sgd, trainer=dict(max_epochs=1)),
    "manual_with_clipping_error": dict(
        optim=_opt_two_sgd, manual=True, trainer=dict(max_epochs=1, gradient_clip_val=0.5)
    ),
    "plateau_without_monitor_error": dict(optim=_plateau(None), trainer=dict(max_epochs=1)),
    "plateau_unknown_monitor_error": dict(optim=_plateau("not_logged"), trainer=dict(max_epochs=2)),
}


# ---------------------------------------------------------------------------
# instrumentation


def _instrument(config, module):
    optimizers, schedulers = _walk(config, ([], []))
    events, digits = module.events, module.digits
    many = len(optimizers) > 1

    for sched in schedulers:
        orig_sched_step = sched.step
        name = type(sched).__name__

        def sched_step(self, *args, _orig=orig_sched_step, _name=name, **kwargs):
            metric = args[0] if args else kwargs.get("metrics", kwargs.get("metric"))
            events.append(f"sched_step {_name}" + ("" if metric is None else f" metric={_fmt(metric)}"))
            return _orig(*args, **kwargs)

        sched.step = types.MethodType(sched_step, sched)

    for idx, opt in enumerate(optimizers):
        tag = f"[{idx}]" if many else ""
        label = type(opt).__name__ + tag
        orig_step = opt.step

        # A bound method (not a plain function) so torch schedulers created later can still wrap it.
        def step(self, closure=None, *args, _orig=orig_step, _label=label, **kwargs):
            if closure is None:
                events.append(f"grad_norm_at_step {_grad_norm(module, digits)}")
                out = _orig(*args, **kwargs)
            else:

                def recording_closure(_closure=closure):
                    result = _closure()
                    events.append(f"grad_norm_at_step {_grad_norm(module, digits)}")
                    return result

                out = _orig(recording_closure, *args, **kwargs)
            events.append(f"opt_step {_label}")
            return out

        opt.step = types.MethodType(step, opt)

        # zero_grad is overridden on a per-instance subclass rather than on the instance: a wrapper
        # that imitates the optimizer's class (Lightning's LightningOptimizer) finds it through its
        # MRO without ever looking at the wrapped instance's attributes.
        cls = type(opt)

        def zero_grad(self, *args, _cls=cls, _tag=tag, **kwargs):
            events.append(f"zero_grad{_tag}")
            return _cls.zero_grad(self, *args, **kwargs)

        opt.__class__ = type(cls.__name__, (cls,), {"zero_grad": zero_grad, "__module__": cls.__module__})
    module.recorded_optimizers = optimizers


def _lrs(module):
    return [round(float(opt.param_groups[0]["lr"]), LR_ROUND) for opt in module.recorded_optimizers]


def _lr_str(module):
    return " ".join(repr(lr) for lr in _lrs(module)) or "-"


def _requires_grad(module):
    return "".join("1" if p.requires_grad else "0" for p in module.parameters())


def make_optim_recorders(L, spec):
    """Return ``(Module, RecordingCallback)`` classes on namespace ``L`` for one scenario ``spec``."""
    num_samples, batch_size = spec.get("data", (10, 4))
    train_log, val_log = spec.get("train_log"), spec.get("val_log")
    none_at = spec.get("none_at")

    class RecordingCallback(L.Callback):
        def __init__(self, events):
            super().__init__()
            self.events = events

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.events.append(f"batch_start e{trainer.current_epoch} b{batch_idx} gs{trainer.global_step}")

        def on_after_backward(self, trainer, pl_module):
            self.events.append("backward")

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.events.append(f"grad_norm_before_step {_grad_norm(pl_module, pl_module.digits)}")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.events.append(f"global_step {trainer.global_step}")
            self.events.append(f"lr_at_batch_end {_lr_str(pl_module)}")

        def on_validation_end(self, trainer, pl_module):
            self.events.append(f"val_end e{trainer.current_epoch} gs{trainer.global_step}")

        def on_train_epoch_end(self, trainer, pl_module):
            self.events.append(f"epoch_end e{trainer.current_epoch} gs{trainer.global_step}")
            self.events.append(f"lr_at_epoch_end {_lr_str(pl_module)}")

    class Base(L.LightningModule):
        def __init__(self, events):
            super().__init__()
            self.events = events
            self.digits = spec.get("digits", ROUND)
            self.recorded_optimizers = []
            self.layer1 = torch.nn.Linear(IN_FEATURES, HIDDEN)
            self.layer2 = torch.nn.Linear(HIDDEN, 1)
            gen = torch.Generator().manual_seed(WEIGHT_SEED)
            with torch.no_grad():
                for p in self.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.5)

        def forward(self, x):
            return self.layer2(torch.relu(self.layer1(x)))

        def _loss(self, batch):
            x, y = batch
            return torch.nn.functional.mse_loss(self(x), y)

        def training_step(self, batch, batch_idx):
            self.events.append(f"train_step e{self.current_epoch} b{batch_idx}")
            loss = self._loss(batch)
            if train_log is not None:
                train_log(self, batch_idx)
            if none_at is not None and batch_idx == none_at:
                return None
            return loss

        def configure_optimizers(self):
            config = spec["optim"](self)
            _instrument(config, self)
            return config

        def train_dataloader(self):
            return _loader(num_samples, batch_size, TRAIN_SEED)

    ns = {}
    if spec.get("val"):

        def validation_step(self, batch, batch_idx):
            loss = self._loss(batch)
            if val_log is not None:
                val_log(self, batch_idx)
            return loss

        def val_dataloader(self):
            return _loader(4, 4, VAL_SEED)

        ns.update(validation_step=validation_step, val_dataloader=val_dataloader)

    if spec.get("manual"):

        def __init__(self, events):
            Base.__init__(self, events)
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            self.events.append(f"train_step e{self.current_epoch} b{batch_idx}")
            loss = None
            for idx, opt in enumerate(self.optimizers()):
                self.toggle_optimizer(opt)
                self.events.append(f"toggle {idx} rg={_requires_grad(self)}")
                loss = self._loss(batch)
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()
                self.untoggle_optimizer(opt)
                self.events.append(f"untoggle {idx} rg={_requires_grad(self)}")
            return loss

        def on_train_epoch_end(self):
            sched = self.lr_schedulers()
            if sched is not None:
                sched.step()

        ns.update(__init__=__init__, training_step=training_step, on_train_epoch_end=on_train_epoch_end)

    if spec.get("even_step_only"):

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            self.events.append(f"optimizer_step e{epoch} b{batch_idx}")
            if batch_idx % 2 == 0:
                optimizer.step(closure=optimizer_closure)
            else:
                optimizer_closure()

        ns["optimizer_step"] = optimizer_step

    if spec.get("custom_lr_scheduler_step"):

        def lr_scheduler_step(self, scheduler, metric):
            self.events.append(f"lr_scheduler_step {type(scheduler).__name__} metric={metric}")
            scheduler.step()

        ns["lr_scheduler_step"] = lr_scheduler_step

    Module = type("OptimModule", (Base,), ns)
    return Module, RecordingCallback


def base_trainer_kwargs(root_dir):
    return dict(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
        default_root_dir=str(root_dir),
    )


def run_optim_scenario(L, name, root_dir):
    """Run scenario ``name`` with framework ``L`` and return the recorded dict."""
    spec = OPTIM_SCENARIOS[name]
    Module, RecordingCallback = make_optim_recorders(L, spec)
    events = []
    model = Module(events)
    trainer = L.Trainer(callbacks=[RecordingCallback(events)], **base_trainer_kwargs(root_dir), **spec["trainer"])
    out = {"events": events}
    try:
        trainer.fit(model)
    except Exception as exc:  # recorded, compared by class name
        out["error"] = type(exc).__name__
    digits = spec.get("digits", ROUND)
    out.update(
        final_global_step=trainer.global_step,
        final_current_epoch=trainer.current_epoch,
        final_params=[round(float(v), digits) for p in model.parameters() for v in p.detach().flatten()],
        final_lrs=_lrs(model),
    )
    return out


def run_optim_scenarios(L, root_dir, names=None):
    """Run every scenario (or just ``names``) and return ``{name: result}``."""
    return {name: run_optim_scenario(L, name, root_dir) for name in (names or OPTIM_SCENARIOS)}
