"""`fulmen.utilities.clip_grad.clip_grad_norm_` (what `gradient_clip_val` with the "norm" algorithm runs): gradients
on different DTensor meshes and plain ones get one total norm, equal to clipping the same plain gradients. Runs in a
subprocess with a 1-process gloo group (a file store, no port) so this test process keeps no process group."""

import subprocess
import sys
import textwrap

import pytest

from helpers.ddp_modules import script_env

SCRIPT = textwrap.dedent("""
    import sys, tempfile, torch, torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import distribute_tensor, Replicate, Shard
    from fulmen.utilities.clip_grad import clip_grad_norm_

    dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
    mesh_1d = init_device_mesh("cpu", (1,))
    mesh_2d = init_device_mesh("cpu", (1, 1), mesh_dim_names=("dp", "tp"))
    torch.manual_seed(0)
    for norm_type in (2.0, float("inf")):
        grads = [torch.randn(4, 3) for _ in range(3)]
        plain = [torch.nn.Parameter(torch.zeros(4, 3)) for _ in grads]
        for p, g in zip(plain, grads):
            p.grad = g.clone()
        mixed = [torch.nn.Parameter(torch.zeros(4, 3)) for _ in grads]
        mixed[0].grad = distribute_tensor(grads[0].clone(), mesh_1d, [Shard(0)])
        mixed[1].grad = distribute_tensor(grads[1].clone(), mesh_2d, [Shard(0), Replicate()])
        mixed[2].grad = grads[2].clone()
        torch.nn.utils.clip_grad_norm_(plain, 0.5, norm_type=norm_type)
        clip_grad_norm_(mixed, 0.5, norm_type=norm_type)
        for p, m in zip(plain, mixed):
            got = m.grad.full_tensor() if hasattr(m.grad, "full_tensor") else m.grad
            torch.testing.assert_close(got, p.grad)
        assert not torch.equal(plain[0].grad, grads[0])  # 0.5 does clip
    dist.destroy_process_group()
    print("ok")
""")


@pytest.mark.distributed
def test_clip_grad_norm_over_several_meshes_and_plain_tensors_equals_plain_clipping():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=script_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
