"""A CUDA device simulated on the CPU, to test where tensors live without a GPU.

Inside `simulated_cuda()`, tensors put on ``cuda`` are real CPU tensors wrapped in a subclass
that reports ``device='cuda:0'``. Every operation runs on the real CPU data, and its results are
wrapped again where they would live on the device. Where host and device tensors meet in one
operation, it also runs on fake tensors (`torch._subclasses.fake_tensor`: torch's own device
rules, which raise torch's own error where CUDA would refuse the mix, and say where results
live). So:

- mixing a device tensor with a host tensor (other than a 0-dim one) fails as on a GPU;
- ``.numpy()`` of a device tensor fails as on a GPU (it must be ``.cpu()``'d first);
- values are the CPU's: this checks placement and transfers, not CUDA's kernels or rounding.

`torch.cuda.get_device_properties` answers as one 80 GB device would; ``is_available()``
stays False (torch's fake tensors start CUDA's runtime when it says True), so
code under test must be given ``device="cuda"``, not left to choose it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
    UnsupportedOperatorException,
)
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

DEVICE = torch.device("cuda", 0)


class SimTensor(torch.Tensor):
    """A CPU tensor (`_host`) that reports itself on the simulated device."""

    _host: torch.Tensor

    @staticmethod
    def __new__(cls, real: torch.Tensor) -> SimTensor:
        strided = real.layout == torch.strided
        out = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls,
            real.shape,
            strides=real.stride() if strided else None,
            storage_offset=real.storage_offset() if strided else None,
            dtype=real.dtype,
            layout=real.layout,
            device=DEVICE,
            requires_grad=real.requires_grad,
        )
        out._host = real
        return out

    # a traceable wrapper: `Module.to` then swaps parameters for these objects, not their data
    def __tensor_flatten__(self) -> tuple[list[str], None]:
        return ["_host"], None

    @staticmethod
    def __tensor_unflatten__(inner: dict, meta: None, outer_size: Any, outer_stride: Any) -> SimTensor:
        return SimTensor(inner["_host"])

    def __repr__(self) -> str:  # type: ignore[override]
        return f"SimTensor({self._host!r}, device='{DEVICE}')"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # only reached outside the mode
        raise RuntimeError(f"{func} on a simulated CUDA tensor outside simulated_cuda()")


class _Mode(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        # in torch's slot for a fake-tensor mode, which is what keeps `.to("cuda")` and factories
        # from starting CUDA's runtime (there is no driver) before the mode sees them
        self._mode_key = torch._C._TorchDispatchModeKey.FAKE
        self.fake = FakeTensorMode(allow_non_fake_inputs=True)

    def _fake(self, x: Any) -> Any:
        """`x` as a fake tensor (on its simulated device), or `x` with ``cuda`` as cuda:0."""
        if not isinstance(x, torch.Tensor):
            return DEVICE if _is_cuda(x) else x
        cached = getattr(x, "_sim_fake", None)  # the fake an op made along with x
        if cached is not None and cached.shape == x.shape and cached.stride() == x.stride() and cached.dtype == x.dtype:
            return cached
        with self.fake:
            return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        flat, spec = tree_flatten((args, kwargs or {}))
        if not any(_on_device(x) or _is_cuda(x) for x in flat):
            return func(*args, **(kwargs or {}))  # all on the host: nothing to check
        tensors = [x for x in flat if isinstance(x, torch.Tensor)]
        on = [_on_device(t) for t in tensors]
        fakes: list[Any] | None = None
        # Where host and device tensors meet, torch's own rules (fake tensors) say whether CUDA
        # would run the op (a 0-dim host scalar, an index, a copy) and where its results live.
        # Otherwise the placement is plain: where the inputs are, or the `device` asked for.
        if any(on) and not all(on) and all(t.layout == torch.strided for t in tensors):
            fargs, fkwargs = tree_unflatten([self._fake(x) for x in flat], spec)
            try:
                with self.fake:
                    fakes = _tensors(func(*fargs, **fkwargs))
            except (DataDependentOutputException, DynamicOutputShapeException, UnsupportedOperatorException):
                pass  # shapes that depend on values (nonzero, item): placement from the inputs
        rargs, rkwargs = tree_unflatten([_real(x) for x in flat], spec)
        out = func(*rargs, **rkwargs)
        if fakes is None:
            dev = _common_device(func, tensors, kwargs)
            fakes = [None if dev.type != "cuda" else _FAKE_CUDA] * len(_tensors(out))
        it = iter(fakes)
        originals = {id(_real(t)): t for t in tensors}

        def wrap(x: Any) -> Any:
            if not isinstance(x, torch.Tensor):
                return x
            fake = next(it)
            if id(x) in originals:  # in place, or an out= argument: the same object back
                return originals[id(x)]
            if fake is None or fake.device.type != "cuda":
                return x
            if x.layout != torch.strided:  # a sparse wrapper cannot be made: tagged instead
                x._sim_device = True  # type: ignore[attr-defined]
                return x
            sim = SimTensor(x)
            if fake is not _FAKE_CUDA:
                sim._sim_fake = fake  # type: ignore[attr-defined]
            return sim

        return tree_map(wrap, out)


class _DeviceOnly:
    """Stands for the fake of an output whose placement alone is known (no fake was made)."""

    device = DEVICE


_FAKE_CUDA: Any = _DeviceOnly()


def _on_device(x: Any) -> bool:
    """Whether `x` is a tensor on the simulated device: a `SimTensor`, or a sparse CPU tensor
    tagged as one (the only form a sparse result can take here; its ``.device`` says cpu)."""
    return isinstance(x, SimTensor) or getattr(x, "_sim_device", False)


def _is_cuda(x: Any) -> bool:
    return (isinstance(x, torch.device) and x.type == "cuda") or (isinstance(x, str) and x.startswith("cuda"))


class _Functions(TorchFunctionMode):
    """``tolist()`` of a device tensor reads its host data (a wrapper has none of its own).

    Attention on the simulated device runs the CPU's own kernel on the host data: torch picks
    its fused kernel by the query's device, and CUDA's cannot run here. So a run on the simulated
    device computes what the same run on the CPU computes, bit for bit."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.tolist and isinstance(args[0], SimTensor):
            return args[0]._host.tolist()  # a copy to the host, as on CUDA
        if func is not torch.nn.functional.scaled_dot_product_attention:
            return func(*args, **kwargs)
        tensors = [t for t in _tensors((args, kwargs)) if t.dim() > 0]
        if not any(_on_device(t) for t in tensors):
            return func(*args, **kwargs)
        if not all(_on_device(t) for t in tensors):
            raise RuntimeError(f"{func.__name__}: Expected all tensors to be on the same device")
        return SimTensor(func(*tree_map(_real, args), **tree_map(_real, kwargs)))


def _tensors(tree: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    tree_map(lambda x: found.append(x) if isinstance(x, torch.Tensor) else None, tree)
    return found


def _real(x: Any) -> Any:
    if isinstance(x, SimTensor):
        return x._host
    if _is_cuda(x):
        return torch.device("cpu")
    return x


def _common_device(func, tensors: list[torch.Tensor], kwargs: Any) -> torch.device:
    """Where an op's results live when no fake was made: the `device` it was asked for, else
    where its inputs are (refusing a host tensor beside device ones, as CUDA would)."""
    wanted = (kwargs or {}).get("device")
    if wanted is not None:
        return DEVICE if _is_cuda(wanted if isinstance(wanted, str) else torch.device(wanted)) else torch.device("cpu")
    devs = {DEVICE if _on_device(t) else t.device for t in tensors if t.dim() > 0 or _on_device(t)}
    if len(devs) > 1:
        raise RuntimeError(f"{func}: Expected all tensors to be on the same device, but found {sorted(map(str, devs))}")
    return devs.pop() if devs else torch.device("cpu")


class _Props:
    name = "simulated CUDA device"
    total_memory = 80 * 2**30


@contextlib.contextmanager
def simulated_cuda() -> Iterator[None]:
    """Run the block with ``cuda`` simulated on the CPU (module docstring)."""
    with contextlib.ExitStack() as stack:
        # what graphkit and its benchmarks ask of torch.cuda: the memory budget, a sync to time
        stack.enter_context(mock.patch.object(torch.cuda, "get_device_properties", lambda *a, **k: _Props()))
        stack.enter_context(mock.patch.object(torch.cuda, "synchronize", lambda *a, **k: None))
        # torch's stand-in for CUDA's device guard where there is no CUDA (fake tensors use it):
        # indexing and `.to("cuda")` ask the guard which device is current
        torch._C._ensureCUDADeviceGuardSet()
        # `torch.tensor(data, device="cuda")` builds on the host, then moves through the mode
        # (as fake tensors have it), rather than copying to a CUDA that is not there
        lift = torch._C._only_lift_cpu_tensors()
        torch._C._set_only_lift_cpu_tensors(True)
        stack.callback(torch._C._set_only_lift_cpu_tensors, lift)
        stack.enter_context(_Mode())
        stack.enter_context(_Functions())
        yield
