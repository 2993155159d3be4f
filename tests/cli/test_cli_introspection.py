"""fulmen's public classes give jsonargparse real types (their files use `from __future__ import annotations`)."""

import enum
import inspect
import subprocess
import sys
import typing

import pytest
from jsonargparse import ArgumentParser

import fulmen
import fulmen.callbacks
import fulmen.loggers


def _public_classes():
    classes = [fulmen.Trainer]
    for package in (fulmen.callbacks, fulmen.loggers):
        for name in package.__all__:
            value = getattr(package, name)
            if isinstance(value, type) and not issubclass(value, enum.Enum):
                classes.append(value)
    return classes


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda c: c.__name__)
def test_signature_resolves_to_real_types(cls):
    signature = inspect.signature(cls, eval_str=True)  # raises on an annotation naming an unknown type
    for parameter in signature.parameters.values():
        assert not isinstance(parameter.annotation, str), (cls.__name__, parameter.name)
    parser = ArgumentParser(exit_on_error=False)
    added = parser.add_class_arguments(cls, "x", fail_untyped=False, instantiate=False)
    wanted = [name for name, p in signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    # Every named parameter becomes an argument (`**kwargs` passed on to a parent class may add more).
    assert {f"x.{name}" for name in wanted} <= set(added)
    # jsonargparse keeps the annotation when it understands it; an unresolvable one would be replaced by Any.
    for action in parser._actions:
        name = action.dest.removeprefix("x.")
        if name in wanted and hasattr(action, "_typehint"):
            annotation = signature.parameters[name].annotation
            assert annotation is inspect.Parameter.empty or annotation is typing.Any or \
                action._typehint is not typing.Any, (cls.__name__, name)


def test_trainer_flags_are_typed_like_lightning():
    parameters = inspect.signature(fulmen.Trainer, eval_str=True).parameters
    from fulmen.callbacks import Callback
    from fulmen.loggers import Logger

    assert Callback in parameters["callbacks"].annotation.__args__
    assert Logger in parameters["logger"].annotation.__args__
    for name in ("accelerator", "strategy", "devices", "precision", "max_time", "plugins"):
        assert parameters[name].annotation is not inspect.Parameter.empty and "Any" not in repr(
            parameters[name].annotation), name


def test_import_fulmen_does_not_load_jsonargparse():
    code = ("import sys, fulmen; fulmen.Trainer; fulmen.cli_lightning_logo; "
            "assert 'jsonargparse' not in sys.modules and 'fulmen.cli' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_lightning_logo(capsys):
    from fulmen.cli import cli_lightning_logo as from_cli

    assert from_cli is fulmen.cli_lightning_logo
    fulmen.cli_lightning_logo()
    out = capsys.readouterr().out
    assert out.startswith("\n\x1b[0;35m") and out.endswith("\x1b[0m\n\n")


def test_missing_jsonargparse_names_the_extra_to_install():
    code = ("import sys; sys.modules['jsonargparse'] = None\n"
            "try:\n    import fulmen.cli\nexcept ModuleNotFoundError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'fulmen[cli]'" in out
