"""Export: `to_torchscript` (script and trace) and `to_onnx`, checked by running what they produce."""

import pytest
import torch
from torch import nn

import fulmen as L


class ExportModule(L.LightningModule):
    """Linear → ReLU → Dropout → Linear; dropout makes train/eval mode visible in the outputs."""

    def __init__(self, with_example=True):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))
        if with_example:
            self.example_input_array = torch.randn(4, 32)

    def forward(self, x):
        return self.net(x)


def _eval_output(model, x):
    model.eval()
    with torch.no_grad():
        output = model(x)
    model.train()
    return output


@pytest.mark.parametrize("method", ["script", "trace"])
def test_to_torchscript_matches_forward_and_saves_a_loadable_file(tmp_path, method):
    model = ExportModule()
    x = torch.randn(8, 32)
    expected = _eval_output(model, x)
    path = tmp_path / f"model-{method}.pt"

    compiled = model.to_torchscript(file_path=path, method=method)
    assert isinstance(compiled, torch.jit.ScriptModule)
    assert torch.allclose(compiled(x), expected)
    loaded = torch.jit.load(str(path))
    assert torch.allclose(loaded(x), expected)
    assert model.training  # the module's own mode is restored


def test_to_torchscript_keeps_eval_mode(tmp_path):
    model = ExportModule()
    model.eval()
    model.to_torchscript()
    assert not model.training


def test_to_torchscript_trace_with_example_inputs():
    model = ExportModule(with_example=False)
    x = torch.randn(3, 32)
    compiled = model.to_torchscript(method="trace", example_inputs=torch.randn(5, 32))
    assert torch.allclose(compiled(x), _eval_output(model, x))


def test_to_torchscript_trace_without_an_input_raises():
    with pytest.raises(ValueError, match="example_inputs.*example_input_array"):
        ExportModule(with_example=False).to_torchscript(method="trace")


def test_to_torchscript_unknown_method_raises():
    with pytest.raises(ValueError, match="'compile'.*script.*trace"):
        ExportModule().to_torchscript(method="compile")


def _run_onnx(path, x):
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [name] = [node.name for node in session.get_inputs()]
    return torch.from_numpy(session.run(None, {name: x.numpy()})[0])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raised inside torch's exporter
@pytest.mark.parametrize("source", ["example_input_array", "input_sample"])
def test_to_onnx_file_runs_like_forward(tmp_path, source):
    pytest.importorskip("onnxruntime")
    model = ExportModule(with_example=source == "example_input_array")
    sample = {"input_sample": torch.randn(4, 32)} if source == "input_sample" else {}
    path = tmp_path / "model.onnx"
    model.to_onnx(path, **sample)
    assert path.exists()
    x = torch.randn(4, 32)  # the exported graph may be specialised to the sample's shape
    torch.testing.assert_close(_run_onnx(path, x), _eval_output(model, x), atol=1e-5, rtol=1e-5)
    assert model.training


def test_to_onnx_without_an_input_raises(tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="input_sample.*example_input_array"):
        ExportModule(with_example=False).to_onnx(tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
