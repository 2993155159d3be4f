"""Exception types users catch, under Lightning's names."""


class MisconfigurationException(Exception):
    """The user's configuration of a Trainer, module, or callback is invalid."""


class SIGTERMException(SystemExit):
    """Ends `trainer.fit` after a SIGTERM: raised once the resumable checkpoint is saved and the run has shut down,
    with exit code 143 (128 + SIGTERM). A `SystemExit`, so an uncaught one ends the process with that code; catch
    it around `fit` to do something else."""


class _TunerExitException(Exception):
    """Raised by a tuner callback run from `Tuner`: ends the Trainer call once tuning is done (teardown, no training)."""
