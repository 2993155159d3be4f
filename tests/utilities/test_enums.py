"""`LightningEnum` and `GradClipAlgorithmType` from `fulmen.utilities` (compared with Lightning 2.6.6's)."""

import warnings

import pytest
import torch

import fulmen as L
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities import GradClipAlgorithmType, LightningEnum


class Color(LightningEnum):
    RED = "Red"
    DARK_BLUE = "dark-blue"


def test_members_equal_their_value_in_any_case_and_hash_alike():
    assert Color.RED == "red" and Color.RED == "RED" and "Red" == Color.RED
    assert Color.RED != "dark-blue" and Color.RED != Color.DARK_BLUE
    assert {Color.RED: 1}["red"] == 1 and hash(Color.RED) == hash("red")
    assert isinstance(Color.RED, str) and Color("Red") is Color.RED


def test_from_str_by_key_value_or_any():
    assert Color.from_str("dark_blue") is Color.DARK_BLUE
    assert Color.from_str("Red", source="value") is Color.RED
    assert Color.from_str("DARK-BLUE", source="value") is Color.DARK_BLUE  # values compare case-insensitively
    assert Color.from_str("dark-blue", source="any") is Color.DARK_BLUE
    with pytest.raises(ValueError, match=r"expected one of \['RED', 'DARK_BLUE'\], but got dark-blue"):
        Color.from_str("dark-blue")


def test_try_from_str_warns_and_returns_none():
    with pytest.warns(UserWarning, match=r"expected one of \['RED', 'DARK_BLUE', 'Red', 'dark-blue'\], but got x"):
        assert Color.try_from_str("x", source="any") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Color.try_from_str("red") is Color.RED


def test_grad_clip_algorithm_type():
    assert GradClipAlgorithmType.supported_types() == ["value", "norm"]
    assert GradClipAlgorithmType.supported_type("norm") and not GradClipAlgorithmType.supported_type("NORM")
    assert GradClipAlgorithmType.from_str("norm") is GradClipAlgorithmType.NORM
    assert set(GradClipAlgorithmType) == {"value", "norm"}


def weights_after_one_step(algorithm):
    torch.manual_seed(0)
    model = BoringModel()
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, gradient_clip_val=1e-3, gradient_clip_algorithm=algorithm,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model)
    return model.layer.weight.detach().clone()


def test_trainer_takes_the_enum_for_gradient_clip_algorithm():
    by_value = weights_after_one_step(GradClipAlgorithmType.VALUE)
    torch.testing.assert_close(by_value, weights_after_one_step("value"))
    torch.testing.assert_close(weights_after_one_step(GradClipAlgorithmType.NORM), weights_after_one_step("norm"))
    assert not torch.allclose(by_value, weights_after_one_step("norm"))
