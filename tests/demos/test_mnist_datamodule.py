"""MNIST demo data: the hosted processed files (downloaded, or placed by hand), torchvision's dataset when it
is installed, and `MNISTDataModule` feeding a Trainer. No network: downloads are served from memory."""

import io
import sys
import types

import pytest
import torch
from torch import nn

import fulmen as L
from fulmen.demos.mnist_datamodule import MNIST, MNISTDataModule

TRAIN_URL = "https://pl-public-data.s3.amazonaws.com/MNIST/processed/training.pt"
TEST_URL = "https://pl-public-data.s3.amazonaws.com/MNIST/processed/test.pt"


@pytest.fixture(autouse=True)
def hosted_mnist(monkeypatch):
    # Whatever is installed, these tests read the hosted files unless a test fakes torchvision itself.
    monkeypatch.setenv("PL_USE_MOCKED_MNIST", "1")


def fake_split(num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (num, 28, 28), dtype=torch.uint8, generator=generator)
    return images, torch.arange(num) % 10


def place_files(root, num_train: int = 40, num_test: int = 12) -> None:
    folder = root / "MNIST" / "complete"
    folder.mkdir(parents=True)
    torch.save(fake_split(num_train, 0), folder / "training.pt")
    torch.save(fake_split(num_test, 1), folder / "test.pt")


def saved_bytes(split) -> bytes:
    buffer = io.BytesIO()
    torch.save(split, buffer)
    return buffer.getvalue()


def test_mnist_reads_the_processed_files_and_standardises_images(tmp_path):
    place_files(tmp_path)
    dataset = MNIST(str(tmp_path), train=True, download=False)
    assert len(dataset) == 40
    image, label = dataset[3]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and label == 3
    raw = fake_split(40, 0)[0][3].float()
    torch.testing.assert_close(image[0], (raw - 0.1307) / 0.3081)
    unnormalised = MNIST(str(tmp_path), train=False, normalize=None, download=False)
    assert len(unnormalised) == 12
    torch.testing.assert_close(unnormalised[0][0][0], fake_split(12, 1)[0][0].float())
    doubled = MNIST(str(tmp_path), train=False, normalize=None, download=False, transform=lambda x: x * 2,
                    target_transform=lambda y: y + 100)
    assert doubled[1][1] == 101
    torch.testing.assert_close(doubled[1][0], unnormalised[1][0] * 2)


def test_mnist_downloads_both_files_into_root(tmp_path, serve):
    files, asked = serve
    files[TRAIN_URL], files[TEST_URL] = saved_bytes(fake_split(20, 0)), saved_bytes(fake_split(10, 1))
    assert len(MNIST(str(tmp_path), train=False)) == 10
    assert asked == [TRAIN_URL, TEST_URL]
    assert sorted(p.name for p in (tmp_path / "MNIST" / "complete").iterdir()) == ["test.pt", "training.pt"]
    MNIST(str(tmp_path))
    assert asked == [TRAIN_URL, TEST_URL]  # present: not fetched again


def test_mnist_offline_names_the_url_and_the_data_dir_option(tmp_path, offline):
    datamodule = MNISTDataModule(data_dir=str(tmp_path), num_workers=0)
    with pytest.raises(RuntimeError, match="Could not download") as info:
        datamodule.prepare_data()
    message = str(info.value)
    assert TRAIN_URL in message and "data_dir" in message
    assert str(tmp_path / "MNIST" / "complete" / "training.pt") in message
    assert list((tmp_path / "MNIST" / "complete").iterdir()) == []  # no partial file


def test_mnist_without_download_and_without_files_says_where_they_belong(tmp_path):
    with pytest.raises(RuntimeError, match="MNIST not found") as info:
        MNIST(str(tmp_path), download=False)
    assert str(tmp_path / "MNIST" / "complete") in str(info.value) and TRAIN_URL in str(info.value)


@pytest.mark.filterwarnings("ignore:.*pin_memory")  # the loaders pin memory, as Lightning's; a CPU has none
def test_mnist_datamodule_splits_and_trains(tmp_path, offline):
    place_files(tmp_path, num_train=40, num_test=12)
    datamodule = MNISTDataModule(data_dir=str(tmp_path), val_split=8, num_workers=0, batch_size=4)
    assert datamodule.num_classes == 10 and datamodule.name == "mnist" and datamodule.default_transforms is None

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
            self.seen = {"train": 0, "val": 0, "test": 0}

        def training_step(self, batch, batch_idx):
            self.seen["train"] += len(batch[0])
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.seen["val"] += len(batch[0])

        def test_step(self, batch, batch_idx):
            self.seen["test"] += len(batch[0])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    model = Classifier()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert model.seen == {"train": 32, "val": 8, "test": 12}
    assert len(datamodule.dataset_train) == 32 and len(datamodule.dataset_val) == 8
    # The split is fixed (seed 42), whatever `seed` says, as in Lightning.
    other = MNISTDataModule(data_dir=str(tmp_path), val_split=8, num_workers=0, seed=7)
    other.setup("fit")
    assert other.dataset_val.indices == datamodule.dataset_val.indices
    assert offline == []


def test_mnist_uses_torchvision_when_installed(tmp_path, monkeypatch):
    monkeypatch.delenv("PL_USE_MOCKED_MNIST")
    calls = []

    class RecordingMNIST:
        def __init__(self, *args, **kwargs):
            calls.append((args, kwargs))

    class ToTensor:
        pass

    torchvision = types.ModuleType("torchvision")
    torchvision.datasets = types.ModuleType("torchvision.datasets")
    torchvision.datasets.MNIST = RecordingMNIST
    torchvision.transforms = types.ModuleType("torchvision.transforms")
    torchvision.transforms.ToTensor = ToTensor
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", torchvision.datasets)
    monkeypatch.setitem(sys.modules, "torchvision.transforms", torchvision.transforms)
    dataset = MNIST(str(tmp_path), train=False, download=True)
    assert isinstance(dataset, RecordingMNIST) and calls == [((str(tmp_path),), {"train": False, "download": True})]
    datamodule = MNISTDataModule(data_dir=str(tmp_path), num_workers=0)
    assert isinstance(datamodule.default_transforms, ToTensor)
