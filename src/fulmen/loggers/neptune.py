"""`NeptuneLogger` at Lightning's module path (`loggers.neptune`). Neptune has shut down its service, and
Lightning 2.6 replaced this logger by one that refuses to be created; fulmen does the same, pointing to the
loggers that work."""

from __future__ import annotations

from typing import Any


class NeptuneLogger:
    """Neptune is no longer available: creating this logger raises an error that names the alternatives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "NeptuneLogger is no longer supported: the Neptune service has been shut down. Use `LitLogger` "
            "(`pip install litlogger`, see https://github.com/lightning-ai/litlogger), or another logger from "
            "`fulmen.loggers` (WandbLogger, CometLogger, MLFlowLogger, TensorBoardLogger, CSVLogger)."
        )
