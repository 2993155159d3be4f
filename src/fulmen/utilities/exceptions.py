"""Exception types users catch, under Lightning's names."""


class MisconfigurationException(Exception):
    """The user's configuration of a Trainer, module, or callback is invalid."""
