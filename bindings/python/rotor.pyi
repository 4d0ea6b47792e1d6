"""Type stubs for rotor, a CPython extension over the C library's rotor.h."""
import os
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
# float32 is used in place when C-contiguous; uint8 / int8 go to the library
# as they are; float64, float16, strided views and lists are copied to float32.
_Vectors = npt.ArrayLike
_Metric = Literal["l2", "ip", "cosine"]
_Kind = Literal["flat", "vamana", "ivf"]
_Place = Literal["ram", "disk"]
# one int64 key per row (non-negative, none twice); None: row numbers
_Keys = Optional[npt.ArrayLike]
# (done, total) -> a true value stops the build
_Progress = Union[bool, Callable[[int, int], Any]]
# a vector's labels: one, several, or none
_Labels = Sequence[Union[int, Sequence[int], None]]

class AllOf(Tuple[Tuple[int, ...]]):
    """A search filter: vectors carrying every label in `labels` (rotor.all_of)."""

    labels: Tuple[int, ...]

# filter=: one label, any of several, or all of several
_Filter = Union[int, Sequence[int], AllOf]

class Error(Exception):
    """Base class of every error the rotor library reports."""

class InvalidArgument(Error, ValueError): ...
class DimensionError(Error, ValueError): ...
class NotFiniteError(Error, ValueError): ...
class EmptyError(Error, ValueError): ...
class OutOfMemory(Error, MemoryError): ...
class IoError(Error, OSError): ...
class FormatError(Error): ...
class CorruptFile(Error): ...
class Unsupported(Error): ...
class ThreadError(Error, RuntimeError): ...
class Cancelled(Error): ...
class KeyNotFound(Error, KeyError): ...

class Index:
    """A nearest-neighbour index: flat, vamana (graph) or ivf."""

    @classmethod
    def build(
        cls,
        x: _Vectors,
        *,
        metric: _Metric = "l2",
        kind: _Kind = "flat",
        quant: Optional[str] = "auto",
        threads: int = 0,
        progress: _Progress = False,
        seed: int = 42,
        degree: Optional[int] = None,
        build_list: Optional[int] = None,
        alpha: Optional[float] = None,
        neighbor_codes: Optional[bool] = None,
        build_space: Optional[Literal["full", "codes"]] = None,
        walk_quant: Optional[str] = None,
        nlist: Optional[int] = None,
        full_vectors: Optional[_Place] = None,
        target_recall: Optional[float] = None,
        labels: Optional[_Labels] = None,
        keys: _Keys = None,
        ram_budget: Optional[int] = None,
        build_memory: Optional[int] = None,
    ) -> "Index": ...
    @classmethod
    def open(
        cls,
        path: _Path,
        *,
        vectors: Optional[_Place] = None,
        io: Optional[Literal["auto", "uring", "pread"]] = None,
        direct_io: Optional[bool] = None,
        verify: bool = False,
        load: Union[bool, Literal[-1, 0, 1], None] = None,
        writable: bool = False,
        sync_each_change: bool = False,
        ram_budget: Union[int, Literal["unlimited"], None] = None,
    ) -> "Index": ...
    def search(
        self,
        q: _Vectors,
        k: int = 10,
        *,
        list_size: Optional[int] = None,
        rerank: Optional[int] = None,
        refine: Optional[int] = None,
        nprobe: Optional[int] = None,
        starts: Optional[int] = None,
        threads: int = 0,
        recall: Optional[float] = None,
        filter: Optional[_Filter] = None,
        allow: Optional[npt.ArrayLike] = None,
        beam_width: Optional[int] = None,
        max_neighbors: Optional[int] = None,
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def add(
        self, x: _Vectors, *, labels: Optional[_Labels] = None, keys: _Keys = None
    ) -> None: ...
    def remove(self, keys: npt.ArrayLike) -> None: ...
    def update(self, keys: npt.ArrayLike, x: _Vectors) -> None: ...
    def consolidate(self) -> None: ...
    def set_labels(self, ids: npt.ArrayLike, labels: _Labels) -> None: ...
    def labels(self, id: int) -> List[int]: ...
    def save(self, path: _Path) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...
    def stats(self) -> Dict[str, Any]: ...
    def reconstruct(self, id: int) -> npt.NDArray[np.float32]: ...
    def contains(self, key: int) -> bool: ...
    def get(self, key: int) -> npt.NDArray[np.float32]: ...
    def __contains__(self, key: object) -> bool: ...
    def __len__(self) -> int: ...
    def __enter__(self) -> "Index": ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def quant(self) -> Optional[str]: ...
    @property
    def closed(self) -> bool: ...

def all_of(*labels: int) -> AllOf: ...
def read_vectors(
    path: _Path, *, max_rows: int = 0, dtype: Optional[npt.DTypeLike] = None
) -> npt.NDArray[Any]: ...
def write_vectors(path: _Path, x: npt.ArrayLike) -> None: ...
def ground_truth(
    base: _Vectors, queries: _Vectors, k: int = 100, metric: _Metric = "l2", *, threads: int = 0
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def build_file(
    input: _Path,
    output: _Path,
    *,
    metric: _Metric = "l2",
    kind: _Kind = "flat",
    quant: Optional[str] = "auto",
    threads: int = 0,
    progress: _Progress = False,
    seed: int = 42,
    degree: Optional[int] = None,
    build_list: Optional[int] = None,
    alpha: Optional[float] = None,
    neighbor_codes: Optional[bool] = None,
    build_space: Optional[Literal["full", "codes"]] = None,
    walk_quant: Optional[str] = None,
    nlist: Optional[int] = None,
    full_vectors: Optional[_Place] = None,
    target_recall: Optional[float] = None,
    ram_budget: Optional[int] = None,
    build_memory: Optional[int] = None,
) -> None: ...
def verify(path: _Path) -> None: ...
def probe(path: _Path) -> Dict[str, Any]: ...
def simd_level() -> str: ...
