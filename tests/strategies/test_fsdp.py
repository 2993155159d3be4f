"""FSDPStrategy (FSDP2 `fully_shard`) in a real 2-process gloo job on CPU: `helpers/fsdp_script.py train` fits the
same model under each sharding option and under DDP; every result must equal a single-process loop over the
same global batches (`helpers/fsdp_modules.reference_fit`) to float tolerance."""


import pytest
import torch

import fulmen as L
from fulmen.plugins.precision import FSDPPrecision
from fulmen.strategies import FSDPStrategy
from helpers.fsdp_modules import assert_state_close, can_measure_peak_memory, reference_fit, result, run_script


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("fsdp_train")
    run_script(out_dir, "train")
    return out_dir


@pytest.mark.distributed
@pytest.mark.parametrize("name", ["full_shard", "shard_grad_op", "cpu_offload", "activation_checkpointing",
                                  "no_shard", "hybrid", "ddp"])
def test_training_matches_one_process_over_the_global_batch(job, name):
    expected, _ = reference_fit(max_epochs=2)
    assert_state_close(result(job, name)["state"], expected)


@pytest.mark.distributed
def test_fsdp_equals_ddp(job):
    ddp = result(job, "ddp")
    for name in ("full_shard", "shard_grad_op", "cpu_offload", "activation_checkpointing"):
        fsdp = result(job, name)
        assert_state_close(fsdp["state"], ddp["state"])
        assert fsdp["metrics"] == pytest.approx(ddp["metrics"], rel=1e-5)  # self.log(sync_dist=True) values


@pytest.mark.distributed
def test_parameters_are_sharded_before_the_optimizer_is_created(job):
    full = result(job, "ddp")["sharded_numel"]
    fully_sharded = result(job, "full_shard")
    assert fully_sharded["optimizer_is_dtensor"] is True  # configure_optimizers saw the sharded parameters
    assert fully_sharded["sharded_numel"] < full * 0.6  # about half of every tensor per rank (rows split 2 ways)
    assert result(job, "no_shard")["sharded_numel"] == full  # NO_SHARD replicates


@pytest.mark.distributed
def test_gradient_clipping_by_norm_uses_the_norm_across_shards(job):
    expected, _ = reference_fit(max_epochs=2, clip=0.05)
    assert_state_close(result(job, "clip")["state"], expected)
    assert_state_close(result(job, "ddp_clip")["state"], expected)


@pytest.mark.distributed
def test_gradient_accumulation_defers_the_reduction(job):
    expected, _ = reference_fit(max_epochs=2, accumulate=2)
    assert_state_close(result(job, "accumulate")["state"], expected)


@pytest.mark.distributed
def test_collectives_and_synced_logging(job):
    report = result(job, "full_shard")
    assert report["collectives"] == {"all_gather": [0.0, 1.0], "reduce_sum": 3.0, "broadcast": "from 0",
                                     "world_size": 2}
    assert set(report["metrics"]) == {"train_loss", "val_loss"}
    for rank in range(2):  # predict after fit: 16 of the 32 samples on each rank
        assert torch.load(job / f"predictions_rank{rank}.pt") == [(4, 2)] * 4


@pytest.mark.distributed
@pytest.mark.parametrize(("name", "dtype"), [("bf16_true", "torch.bfloat16"), ("bf16_mixed", "torch.float32")])
def test_bf16_precisions(job, name, dtype):
    expected, _ = reference_fit(max_epochs=2)
    report = result(job, name)
    assert report["dtypes"] == [dtype]  # "-true" converts the module; "-mixed" keeps float32 shards
    assert_state_close(report["state"], expected, atol=3e-2)  # bfloat16 compute: about 3 significant digits


@pytest.mark.distributed
@pytest.mark.parametrize("devices", [1, 2])
def test_meta_device_model_is_materialised_sharded(tmp_path, devices):
    run_script(tmp_path, "meta", "--devices", str(devices))
    report = torch.load(tmp_path / f"meta_{devices}.pt")
    assert report["built_on"] == "meta"  # `trainer.init_module(empty_init=True)` allocated nothing
    assert report["finite"]  # reset_parameters initialised every shard
    from helpers.fsdp_modules import BigNet

    full_bytes = sum(p.nbytes for p in BigNet().parameters())
    # Each rank holds 1/devices of every tensor (the 2-row head splits evenly too).
    assert report["local_bytes"] == full_bytes // devices


@pytest.mark.distributed
def test_fp16_mixed_scales_with_a_sharded_scaler(job):
    expected, _ = reference_fit(max_epochs=2)
    report = result(job, "fp16_mixed")
    assert report["scaler"] == "ShardedGradScaler"
    assert report["dtypes"] == ["torch.float32"]  # float32 shards, float16 compute
    assert report["scale"] == 2.0 ** 8  # the user's scaler: no step overflowed (none skipped)
    assert_state_close(report["state"], expected, atol=3e-2)  # float16 compute and reduction


@pytest.mark.distributed
def test_fp16_mixed_ranks_agree_to_skip_a_step_with_an_inf_in_one_shard(job):
    # Only rank 1's shard held the inf: the scaler's verdict is shared, so neither rank stepped and both halved
    # the scale (an unshared verdict would have rank 0 step and keep its scale).
    [(scale_0, stepped_0), (scale_1, stepped_1)] = result(job, "fp16_inf")["first_step"]
    assert stepped_0 == stepped_1 == 0.0
    assert scale_0 == scale_1 == 2.0 ** 15


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("fsdp_configure")
    run_script(out_dir, "configure")
    return out_dir


@pytest.mark.distributed
@pytest.mark.skipif(not can_measure_peak_memory(), reason="needs /proc/self/clear_refs to reset the peak RSS")
def test_configure_model_layers_start_on_meta_and_fit_a_limit_the_full_model_exceeds(configured):
    meta, full = result(configured, "wide_meta"), result(configured, "wide_full")
    assert meta["built_on"] == "meta" and full["built_on"] == "cpu"
    assert meta["local_bytes"] == meta["full_bytes"] // 2  # each rank holds half of every layer
    # A per-process limit of 3/4 of the model (384 MiB of 512): built from meta, each rank's resident memory grew
    # by about its shard (256 MiB) while building and sharding; built in full (as Lightning does), it exceeds it.
    limit = 0.75 * meta["full_bytes"]
    assert max(meta["growth"]) < limit, meta["growth"]
    assert min(full["growth"]) > limit, full["growth"]


@pytest.mark.distributed
def test_configure_model_that_sets_values_falls_back_to_the_exact_full_build(configured):
    # `make_net()` copies seeded values into its layers: on meta they would be lost, so the build reran for real
    # (module and random generators rewound) and the run equals the one-process reference.
    expected, _ = reference_fit(max_epochs=2)
    assert_state_close(result(configured, "configured_fallback")["state"], expected)


# -- in-process: names, precision and argument errors -------------------------------------------------------


def test_strategy_names_select_fsdp():
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="fsdp", precision="bf16-mixed", logger=False)
    assert isinstance(trainer.strategy, FSDPStrategy)
    assert isinstance(trainer.strategy.precision_plugin, FSDPPrecision)
    assert trainer.strategy.precision_plugin.precision == "bf16-mixed"
    offload = L.Trainer(accelerator="cpu", devices=2, strategy="fsdp_cpu_offload", logger=False).strategy
    assert offload.cpu_offload is not None and offload.world_size == 2


def test_register_strategies_names_lightnings_aliases():
    registered = {}

    class Registry:
        def register(self, name, cls, description="", **options):
            registered[name] = (cls, options)

    FSDPStrategy.register_strategies(Registry())
    assert registered == {"fsdp": (FSDPStrategy, {}), "fsdp_cpu_offload": (FSDPStrategy, {"cpu_offload": True})}
    assert FSDPStrategy.get_registered_strategies() == ["fsdp", "fsdp_cpu_offload"]


def test_fsdp_precision_names_and_errors():
    assert FSDPPrecision("32-true").mixed_precision_config is None
    assert FSDPPrecision("bf16-true").mixed_precision_config.param_dtype == torch.bfloat16
    fp16 = FSDPPrecision("16-mixed")
    assert type(fp16.scaler).__name__ == "ShardedGradScaler"
    assert fp16.mixed_precision_config.param_dtype == torch.float16
    with pytest.raises(ValueError, match="not supported with FSDP"):
        FSDPPrecision("64-true")
    with pytest.raises(ValueError, match="only '16-mixed' scales"):
        FSDPPrecision("bf16-mixed", scaler=object())
    with pytest.raises(ValueError, match="not supported with FSDP"):
        L.Trainer(accelerator="cpu", devices=2, strategy="fsdp", precision="64-true", logger=False)


def test_no_shard_takes_no_mesh_and_hybrid_checks_its_mesh():
    with pytest.raises(ValueError, match="NO_SHARD"):
        FSDPStrategy(sharding_strategy="NO_SHARD", device_mesh=(2, 1))
    from fulmen.strategies.fsdp_wrap import build_mesh

    with pytest.raises(ValueError, match="2-D mesh"):
        build_mesh("HYBRID_SHARD", (4,), 4, 1, "cpu")
    with pytest.raises(ValueError, match="multiply to 3"):
        build_mesh("HYBRID_SHARD", None, 3, 2, "cpu")


def test_meta_parameters_without_reset_parameters_are_refused():
    from fulmen.strategies.fsdp_wrap import materialize

    class NoReset(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.empty(2, device="meta"))

    with pytest.raises(TypeError, match="NoReset lacks"):
        materialize(NoReset(), torch.device("cpu"))
