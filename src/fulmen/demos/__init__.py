"""Demo models and data (Lightning's `demos`); each name loads on first use."""

from fulmen.utilities.lazy_exports import lazy_exports

__all__ = ["BoringDataModule", "BoringModel", "DemoModel", "LightningLSTM", "LightningTransformer",
           "SequenceSampler", "SimpleLSTM", "Transformer", "WikiText2"]

_EXPORTS = {
    **{name: "fulmen.demos.boring_classes" for name in ("BoringDataModule", "BoringModel", "DemoModel")},
    **{name: "fulmen.demos.lstm" for name in ("LightningLSTM", "SequenceSampler", "SimpleLSTM")},
    **{name: "fulmen.demos.transformer" for name in ("LightningTransformer", "Transformer", "WikiText2")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
