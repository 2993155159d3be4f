"""Lightning's `core.saving` helpers and `core.mixins` path, used as a user would."""

from argparse import Namespace

import pytest

import fulmen as L


def test_hparams_yaml_round_trip_by_keyword(tmp_path):
    from fulmen.core.saving import load_hparams_from_yaml, save_hparams_to_yaml

    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(config_yaml=path, hparams=Namespace(lr=0.1, layers=[1, 2]))
    assert load_hparams_from_yaml(config_yaml=path) == {"lr": 0.1, "layers": [1, 2]}


def test_tags_csv_round_trip_converts_values_back(tmp_path):
    from fulmen.core.saving import load_hparams_from_tags_csv, save_hparams_to_tags_csv

    path = tmp_path / "tags.csv"
    hparams = Namespace(batch_size=32, learning_rate=0.001, data_root="./any/path", flags=[1, 2], on=True)
    save_hparams_to_tags_csv(path, hparams)
    assert path.read_text().splitlines()[0] == "key,value"
    assert load_hparams_from_tags_csv(path) == vars(hparams)


def test_tags_csv_missing_file_and_missing_folder(tmp_path):
    from fulmen.core.saving import load_hparams_from_tags_csv, save_hparams_to_tags_csv

    with pytest.warns(RuntimeWarning, match="Missing Tags"):
        assert load_hparams_from_tags_csv(tmp_path / "absent.csv") == {}
    with pytest.raises(RuntimeError, match="Missing folder"):
        save_hparams_to_tags_csv(tmp_path / "no" / "tags.csv", {"a": 1})


def test_update_hparams_merges_nested_dicts_and_convert_parses_literals():
    from fulmen.core.saving import convert, update_hparams

    hparams = {"c": 4, "a": {"b": 1, "keep": 0}}
    update_hparams(hparams, {"a": {"b": 2}, "c": 1, "new": 5})
    assert hparams == {"c": 1, "a": {"b": 2, "keep": 0}, "new": 5}
    assert convert("3") == 3 and convert("0.5") == 0.5 and convert("False") is False
    assert convert("[1, 'x']") == [1, "x"] and convert("plain text") == "plain text"


def test_hyperparameters_mixin_path_on_a_plain_class(tmp_path):
    from fulmen.core.mixins import HyperparametersMixin

    class Settings(HyperparametersMixin):
        def __init__(self, width=4, name="x"):
            super().__init__()
            self.save_hyperparameters()

    settings = Settings(width=8)
    assert settings.hparams == {"width": 8, "name": "x"} and settings.hparams.width == 8
    assert issubclass(L.LightningModule, HyperparametersMixin)
    assert issubclass(L.LightningDataModule, HyperparametersMixin)


def test_hparams_yaml_writes_an_enum_by_name_and_skips_what_yaml_cannot_hold(tmp_path):
    import enum

    import torch

    from fulmen.core.saving import load_hparams_from_yaml, save_hparams_to_yaml

    class Switch(enum.Enum):
        on = "value-of-on"

    path = tmp_path / "hparams.yaml"
    with pytest.warns(UserWarning, match="Skipping 'dtype' parameter because it is not possible to safely dump to "
                                         "YAML."):
        save_hparams_to_yaml(path, {"switch": Switch.on, "dtype": torch.float32, "lr": 0.1}, use_omegaconf=False)
    assert load_hparams_from_yaml(path, use_omegaconf=False) == {"switch": "on", "lr": 0.1}  # as Lightning
