"""ModelParallelStrategy (tensor parallel x FSDP2 over a 2-D DeviceMesh) in a real 4-process gloo job on CPU:
`helpers/mp_script.py all` trains FSDPNet's blocks split column-/row-wise over "tensor_parallel" and sharded over
"data_parallel" (2 x 2); the result must equal a single-process loop over the same global batches
(`helpers/fsdp_modules.reference_fit`) to float tolerance, and sharded/full checkpoints must round-trip."""

import os
import sys

import pytest
import torch

import fulmen as L
from fulmen.strategies import ModelParallelStrategy
from helpers.ddp_modules import run_in_session
from helpers.fsdp_modules import FSDPNet, assert_state_close, make_loader, reference_fit, result

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers", "mp_script.py")


def run_mp_script(out_dir, *args, timeout=300):
    returncode, _, stderr = run_in_session([sys.executable, SCRIPT, str(out_dir), *args], timeout)
    assert returncode == 0, stderr[-4000:]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("model_parallel")
    run_mp_script(out_dir, "all")
    return out_dir


@pytest.fixture(scope="module")
def single_job(tmp_path_factory, job):
    out_dir = tmp_path_factory.mktemp("model_parallel_single")
    run_mp_script(out_dir, "single", "--resume", str(job / "sharded.ckpt"))
    return out_dir


@pytest.mark.distributed
def test_2x2_mesh_trains_like_one_process_over_the_global_batch(job):
    report = result(job, "train")
    assert report["mesh"] == ((2, 2), ("data_parallel", "tensor_parallel"))  # `self.device_mesh` in configure_model
    # the block weights are 2-D DTensors: sharded by FSDP over data_parallel and split by tensor parallelism
    assert report["placements"]["net.0.inner.weight"][1] == "S(0)"  # ColwiseParallel: rows
    assert report["placements"]["net.0.outer.weight"] == ["S(0)", "S(1)"]  # RowwiseParallel: columns
    expected, _ = reference_fit(max_epochs=2)
    assert_state_close(report["state"], expected)


@pytest.mark.distributed
def test_data_is_split_over_the_data_parallel_ranks_only(job):
    report = result(job, "train")
    assert report["sampler_kwargs"] == [{"num_replicas": 2, "rank": 0}, {"num_replicas": 2, "rank": 0},
                                        {"num_replicas": 2, "rank": 1}, {"num_replicas": 2, "rank": 1}]
    seen = report["seen"]  # (rank, batch, sample): ranks 0/1 and 2/3 are tensor-parallel peers
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[2], seen[3])
    assert not torch.equal(seen[0], seen[2])


@pytest.mark.distributed
def test_gradient_accumulation_and_validation(job):
    report = result(job, "accumulate")
    expected, _ = reference_fit(max_epochs=2, accumulate=2)
    assert_state_close(report["state"], expected)
    assert set(report["metrics"]) == {"train_loss", "val_loss"}  # self.log(sync_dist=True) over all 4 ranks


@pytest.mark.distributed
def test_gradient_clipping_by_norm_across_meshes(job):
    # tensor-parallel 2-D DTensors and a data-parallel-only head: PyTorch's clip_grad_norm_ refuses to mix meshes
    expected, _ = reference_fit(max_epochs=2, clip=0.05)
    assert_state_close(result(job, "clip")["state"], expected)
    unclipped, _ = reference_fit(max_epochs=2)
    assert not torch.allclose(expected["net.2.weight"], unclipped["net.2.weight"], atol=1e-3)  # 0.05 does clip


@pytest.mark.distributed
@pytest.mark.parametrize("kind", ["sharded", "full"])
def test_checkpoint_round_trips(job, kind):
    expected, _ = reference_fit(max_epochs=2)  # 1 epoch, save, resume for the 2nd: as if never stopped
    assert_state_close(result(job, f"resumed_{kind}")["state"], expected)
    path = job / f"{kind}.ckpt"
    assert result(job, f"saved_{kind}")["is_dir"] is (kind == "sharded")
    after_one_epoch, _ = reference_fit(max_epochs=1)
    if kind == "sharded":
        assert (path / "meta.pt").is_file() and (path / ".metadata").is_file()
        from fulmen.strategies.fsdp_checkpoint import convert_sharded_checkpoint  # `fulmen convert-checkpoint`

        converted = torch.load(convert_sharded_checkpoint(path, job / "converted.ckpt"), weights_only=False)
        assert_state_close(converted["state_dict"], after_one_epoch)
    else:  # one Lightning-layout file of full tensors: loads into a plain single-process module
        checkpoint = torch.load(path, weights_only=False)
        assert_state_close(checkpoint["state_dict"], after_one_epoch)
        restored = FSDPNet.load_from_checkpoint(path)
        assert_state_close({k: v for k, v in restored.state_dict().items()}, after_one_epoch)


@pytest.mark.distributed
def test_meta_device_model_is_materialised_after_configure_model(job):
    report = result(job, "meta")  # `trainer.init_module(empty_init=True)`: parallelised while on the meta device
    assert report["built_on"] == "meta"
    assert report["finite"] is True  # every rank's shards allocated and initialised by `reset_parameters`
    assert report["placements"]["net.0.outer.weight"] == ["S(0)", "S(1)"]


@pytest.mark.distributed
def test_auto_sizes_one_process_resume_and_configure_model_required(single_job):
    report = result(single_job, "auto_single")
    assert report["mesh"] == ((1, 1), ("data_parallel", "tensor_parallel"))  # "auto": nodes x devices per node
    expected, _ = reference_fit(max_epochs=2)
    assert_state_close(report["state"], expected)
    # the 2 x 2 job's sharded checkpoint (1 epoch) resumes on one process: resharded, as if never stopped
    assert_state_close(result(single_job, "resumed_sharded_on_1")["state"], expected)
    errors = torch.load(single_job / "errors.pt")
    assert "override `configure_model()`" in errors["no_configure_model"]


def test_mesh_sizes_must_multiply_to_the_world_size(spawn_env, tmp_path):
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=ModelParallelStrategy(data_parallel_size=2,
                        tensor_parallel_size=1), max_epochs=1, logger=False, default_root_dir=tmp_path,
                        enable_progress_bar=False)
    with pytest.raises(RuntimeError, match=r"product must equal the world size \(1"):
        trainer.fit(FSDPNet(), make_loader(1))  # fails before any process group is created


def test_unsupported_precision_is_rejected():
    with pytest.raises(ValueError, match="does not support `precision='64-true'`"):
        L.Trainer(accelerator="cpu", devices=1, strategy=ModelParallelStrategy(), precision="64-true", logger=False)


def test_device_mesh_is_read_only_and_none_elsewhere():
    module = FSDPNet()
    assert module.device_mesh is None
    with pytest.raises(AttributeError):
        module.device_mesh = object()
    with pytest.raises(RuntimeError, match="device mesh exists once the processes have joined"):
        ModelParallelStrategy().device_mesh


@pytest.mark.parametrize("flags", [{"sync_batchnorm": True}, {"plugins": [L.plugins.TorchSyncBatchNorm()]}])
def test_layer_sync_is_refused_with_the_fix(flags):
    # One sync over every process would also average across tensor-parallel peers (Lightning ignores it silently).
    with pytest.raises(ValueError, match=r"does not apply TorchSyncBatchNorm.*convert_sync_batchnorm"):
        L.Trainer(accelerator="cpu", devices=2, strategy=ModelParallelStrategy(), logger=False, **flags)
