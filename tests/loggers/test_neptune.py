"""NeptuneLogger: as in Lightning 2.6, only at `loggers.neptune`, and creating it is refused (Neptune shut down)."""

import pytest

import fulmen.loggers


def test_creating_a_neptune_logger_points_to_the_alternatives():
    from fulmen.loggers.neptune import NeptuneLogger

    with pytest.raises(RuntimeError, match="Neptune service has been shut down. Use `LitLogger`"):
        NeptuneLogger(api_key="key", project="workspace/project")


def test_neptune_logger_is_not_in_the_loggers_package_as_in_lightning():
    assert "NeptuneLogger" not in fulmen.loggers.__all__
    with pytest.raises(ImportError):
        from fulmen.loggers import NeptuneLogger  # noqa: F401
