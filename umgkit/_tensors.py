"""Reading weights files and copying saved tensors into a model: one rule each for every loader.

Checkpoints, adapters and model folders all store parameters by name; loading must match the names and
shapes exactly (a silently skipped key would train or predict with fresh weights). Files are read as
safetensors, or with ``torch.load(weights_only=True)``; what cannot be read that way is refused with an
error naming the file, never retried with a full unpickler.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import UmgkitError, WeightsError

__all__ = ["copy_named", "fit_data_sized_state", "head_buffers", "read_safetensors", "read_torch_file",
           "reading_weights"]


def read_safetensors(path: str | os.PathLike, *, fix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file; a missing or unreadable file raises `WeightsError`."""
    from safetensors.torch import load_file

    with reading_weights(path, fix):
        return load_file(str(path))


def read_torch_file(path: str | os.PathLike, *, fix: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a file that needs a full unpickler is refused."""
    with reading_weights(path, fix):
        return torch.load(path, map_location="cpu", weights_only=True)


@contextlib.contextmanager
def reading_weights(path: str | os.PathLike, fix: str = "") -> Iterator[None]:
    """Turn a missing file and the errors of safetensors / ``torch.load(weights_only=True)`` (also when a
    library such as open_clip or timm reads the file) into one `WeightsError` naming ``path``."""
    from safetensors import SafetensorError

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist. {fix}".strip())
    try:
        yield
    except UmgkitError:
        raise
    except SafetensorError as err:
        raise WeightsError(f"{path} is not a readable safetensors file ({err}); it may be truncated or "
                           f"another kind of file under a .safetensors name. {fix}".strip()) from err
    except (pickle.UnpicklingError, EOFError) as err:
        raise WeightsError(f"{path} cannot be read as plain tensors ({_first_reason(err)}); umgkit never "
                           "unpickles other objects, since a pickle can run code. Save the weights as a "
                           f"state dict of tensors, preferably as .safetensors. {fix}".strip()) from err
    except (RuntimeError, KeyError, ValueError) as err:  # a torch / zip archive the reader cannot parse
        raise WeightsError(f"{path} could not be loaded as weights ({_first_reason(err)}). "
                           f"{fix}".strip()) from err


def _first_reason(err: BaseException) -> str:
    """The library's own diagnosis without its advice (torch suggests a full unpickler, which is unsafe)."""
    if isinstance(err, KeyError):  # the unpickler met bytes that are not a pickle at all
        return "not a file that torch.save wrote"
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    line = next((part.strip() for part in text.splitlines() if part.strip()), type(err).__name__)
    if "weights_only" in line:
        return "it holds objects other than tensors"
    return line.rstrip(".")


def copy_named(params: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor], *, source: str,
               fix: str, error: type[Exception] = ValueError) -> None:
    """Copy ``tensors[name]`` into each of ``params`` (in place, no grad); ``source`` names where the
    tensors came from and ``fix`` says what to do, in the error raised on any name or shape mismatch."""
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise error(f"{source} does not fit the model: missing {_few(missing)}, unexpected "
                    f"{_few(unexpected)}. {fix}")
    for name, param in params.items():
        if param.shape != tensors[name].shape:
            raise error(f"{source}: '{name}' has shape {tuple(tensors[name].shape)}, the model "
                        f"{tuple(param.shape)}. {fix}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name])


def head_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The persistent buffers of ``model.head`` by their names in ``model`` (``head.<name>``): state a head
    holds without training it (Tip-Adapter's cache). Non-persistent buffers (text rows re-encoded at build
    time) and the backbone's are left out; {} when there is no head or it has none."""
    head = getattr(model, "head", None)
    if not isinstance(head, torch.nn.Module):
        return {}
    # Every name of a parameter a head registers twice (a module shared by two parents) is a parameter;
    # a buffer registered under two names is kept once, under its first.
    params = {n for n, _ in head.named_parameters(remove_duplicate=False)}
    out, seen = {}, set()
    for name, tensor in head.state_dict(keep_vars=True).items():
        if name not in params and id(tensor) not in seen:
            seen.add(id(tensor))
            out[f"head.{name}"] = tensor
    return out


def fit_data_sized_state(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Let each submodule with a ``fit_state_shapes(tensors)`` hook resize its state to the saved ``tensors``
    (named relative to that submodule) before they are copied in by name: a head whose rows come from data
    (N cached training features) is built empty and only learns N from what was saved."""
    for name, module in model.named_modules():
        hook = getattr(module, "fit_state_shapes", None)
        if callable(hook):
            prefix = f"{name}." if name else ""
            hook({k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)})


def _few(names: list[str], limit: int = 5) -> str:
    if not names:
        return "none"
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
