"""A pickle reader that builds plain data and numpy arrays and nothing else: CIFAR-10's
batches are pickles, and a data file must not be able to run code on the machine that reads
it (pickle.load runs whatever a pickle names)."""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any, ClassVar

import numpy as np

from dltrain.errors import ConfigError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class _Refused(pickle.UnpicklingError):
    pass


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: every other global is refused.

    A CIFAR batch is a dict of strings, lists and one uint8 array; building that array takes
    numpy's reconstruction functions (and `_codecs.encode`, with which Python 3 writes bytes
    at protocol 2), and nothing else a pickle could name is allowed.
    """

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("_codecs", "encode"): codecs.encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"it names {module}.{name}") from None


def unpickle_arrays(content: bytes, where: str) -> Any:
    """The object pickled in `content` (Python 2 pickles included), if it is plain data."""
    try:
        return ArrayUnpickler(io.BytesIO(content), encoding="latin1").load()
    except _Refused as err:
        raise ConfigError(f"{where} holds more than arrays and plain data ({err}) and was not "
                          "loaded: a data file must not run code.") from None
    except Exception as err:  # any way a damaged pickle can fail
        raise ConfigError(f"{where} is truncated or corrupt ({type(err).__name__}: {err}).") \
            from None
