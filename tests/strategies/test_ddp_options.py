"""DDPStrategy's own options are checked when the strategy is built, before any process starts: a mistake
that torch would report only inside `fit` (or an option that would have no effect) fails at once."""

import pytest
import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, post_localSGD_hook

from fulmen.strategies import DDPStrategy, SingleDeviceStrategy


def local_sgd_state():
    return post_localSGD_hook.PostLocalSGDState(process_group=None, subgroup=None, start_localSGD_iter=4)


@pytest.mark.parametrize("options", [
    {"ddp_comm_state": object()},
    {"ddp_comm_wrapper": default_hooks.fp16_compress_wrapper},
])
def test_comm_state_or_wrapper_without_a_hook_is_refused(options):
    with pytest.raises(ValueError, match="only takes effect with a `ddp_comm_hook`"):
        DDPStrategy(**options)


def test_comm_hook_must_be_callable():
    with pytest.raises(TypeError, match="ddp_comm_hook=...\\)` must be callable"):
        DDPStrategy(ddp_comm_hook="allreduce")


def test_model_averaging_period_needs_post_local_sgd():
    with pytest.raises(ValueError, match="PostLocalSGDState"):
        DDPStrategy(ddp_comm_hook=default_hooks.allreduce_hook, model_averaging_period=4)


def test_post_local_sgd_needs_a_model_averaging_period():
    # Lightning 2.6.6 raises this too ("model averaging period is not provided"), but only when fit starts.
    with pytest.raises(ValueError, match="model_averaging_period=N"):
        DDPStrategy(ddp_comm_state=local_sgd_state(), ddp_comm_hook=post_localSGD_hook.post_localSGD_hook)


@pytest.mark.parametrize("period", [0, -1, 2.5, True])
def test_model_averaging_period_must_be_a_positive_int(period):
    with pytest.raises(ValueError, match="must be an int >= 1"):
        DDPStrategy(ddp_comm_state=local_sgd_state(), ddp_comm_hook=post_localSGD_hook.post_localSGD_hook,
                    model_averaging_period=period)


def test_valid_comm_options_are_kept():
    state = local_sgd_state()
    strategy = DDPStrategy(ddp_comm_state=state, ddp_comm_hook=post_localSGD_hook.post_localSGD_hook,
                           model_averaging_period=4)
    assert strategy._comm.state is state and strategy._comm.averaging_period == 4


def test_unknown_ddp_keyword_fails_when_the_strategy_is_built():
    with pytest.raises(TypeError, match="bucket_cap_mbs"):
        DDPStrategy(bucket_cap_mbs=10)


def test_known_ddp_keywords_reach_distributed_data_parallel():
    strategy = DDPStrategy(bucket_cap_mb=10, gradient_as_bucket_view=True)
    assert strategy._ddp_kwargs["bucket_cap_mb"] == 10 and strategy._ddp_kwargs["gradient_as_bucket_view"] is True


@pytest.mark.parametrize("strategy_class", [DDPStrategy, SingleDeviceStrategy])
def test_accelerator_objects_are_not_supported(strategy_class):
    with pytest.raises(NotImplementedError, match="strategies take no Accelerator"):
        strategy_class(accelerator="cuda")
    assert strategy_class(accelerator=None).root_device == torch.device("cpu")
