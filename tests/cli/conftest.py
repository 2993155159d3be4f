import pytest

pytest.importorskip("jsonargparse")


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    # LightningCLI warns when `args=` and command-line arguments (here pytest's) are both present.
    monkeypatch.setattr("sys.argv", ["cli"])
