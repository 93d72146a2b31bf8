"""A simulated GPU for CPU-only machines: CUDA's placement rules, CPU compute (``XAI_DEVICE=sim``).

Nothing here is course content: ``helpers.env`` turns it on (``XAI_DEVICE=sim``) so that CI can run every notebook
the way Colab's T4 runtime runs it, and catch what crashes there (a CPU batch fed to a model on the GPU, a module
left on the CPU, a GPU tensor handed to NumPy or matplotlib) on a machine without a GPU.

How it works:

* :class:`SimTensor` is a wrapper tensor subclass. It keeps an ordinary CPU tensor inside and advertises the ``meta``
  device to PyTorch's C++ core (advertising ``cuda`` aborts inside autograd on a machine without a CUDA driver).
  Every ATen op on it runs on the inner CPU tensors in ``__torch_dispatch__``, after CUDA's device check: an op whose
  tensor arguments are on the simulated device *and* on the CPU raises, unless the CPU tensors are 0-dim (CUDA
  allows CPU scalars), indices of an indexing op, or either side of a copy.
* :class:`_MetaFactoryMode` (a ``TorchDispatchMode``) makes the tensors C++ code creates "on the device of" a
  simulated tensor (``meta``, no data: autograd's zero gradients, a scalar in a backward formula) simulated ones.
* :class:`_PlacementMode` (a ``TorchFunctionMode``, entered by :func:`activate` and left on for the session) turns
  ``.cuda()``, ``.to("cuda")``, ``.to(DEVICE)``, ``device="cuda"`` into the simulated device and ``.cpu()`` back,
  and makes Python code see ``t.device == cuda:0`` and ``t.is_cuda`` for simulated tensors.
* ``torch.cuda`` / ``torch.accelerator`` answer as on a one-GPU machine (:func:`activate` lists what is patched).

Decisions (what is emulated, what is bypassed):

* results equal a CPU run in float32: ``torch.autocast("cuda", ...)`` is accepted and changes nothing (CUDA's
  autocast does not apply to the wrapper), so a T4's float16 numerics are *not* simulated; ``GradScaler("cuda")``
  runs its real code (scale, unscale, inf check) on the CPU.
* random numbers come from the CPU generators (so a ``sim`` run draws what a CPU run draws; a real GPU draws
  different numbers). ``torch.Generator(device="cuda")`` gives a CPU generator marked as a CUDA one; as on CUDA, a
  plain CPU generator passed to a random op on the simulated device raises.
* ``torch.cuda.manual_seed*``, ``synchronize``, ``empty_cache``, ``set_device``, RNG state get/set are no-ops;
  memory statistics are 0 (nothing is allocated on a device); ``get_device_name`` says "simulated";
  ``pin_memory()`` returns the tensor itself.
* ``torch.save`` of a simulated tensor stores the CPU data; loading it while the simulation is on gives a simulated
  tensor again (as a CUDA tensor round-trips), otherwise a CPU tensor. ``map_location`` is not applied to it.
* ``nn.Module.to(DEVICE)`` replaces the module's Parameter objects (CUDA keeps them): build the optimizer after
  moving the model, as everyone does.
* Not simulated: ``torch.compile``, CUDA graphs, streams (a stand-in stream object answers "not capturing"),
  DataLoader workers with a simulated tensor inside a worker process, more than one GPU.

Known gap: inside a custom ``torch.autograd.Function``'s backward the placement mode is not active (the autograd
engine runs it outside the Python modes), so ``torch.tensor(..., device=x.device)`` there makes a data-less meta
tensor; make such tensors from ``x`` (``torch.zeros_like(x).copy_(...)``, ``x.new_full``), as helpers.relevance does.
"""

from __future__ import annotations

import contextlib
import time
import types
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, return_and_correct_aliasing
from torch.utils._pytree import tree_flatten, tree_unflatten

__all__ = ["SimTensor", "activate", "deactivate", "active", "simulated", "is_simulated", "to_simulated",
           "DEVICE_NAME"]

#: what ``torch.cuda.get_device_name()`` answers while the simulation is on
DEVICE_NAME = "simulated GPU (XAI_DEVICE=sim: CUDA's device rules, computed on the CPU)"
_CUDA0 = torch.device("cuda", 0)
_CPU = torch.device("cpu")
_META = torch.device("meta")
_aten = torch.ops.aten

# ops whose CPU tensor arguments are allowed next to CUDA ones (as on a real GPU): copies between devices
_CROSS_DEVICE_OK = {_aten.copy_.default, _aten.copy.default, _aten._copy_from.default,
                    _aten._copy_from_and_resize.default, _aten.set_.source_Tensor}
# indexing ops: CPU index tensors are allowed (indices are args[1])
_INDEX_OPS = {_aten.index.Tensor, _aten.index_put_.default, _aten.index_put.default,
              _aten._index_put_impl_.default, _aten._unsafe_index.Tensor}


class SimTensor(torch.Tensor):
    """A tensor on the simulated GPU: a CPU tensor ``_inner`` inside a wrapper that advertises the ``meta`` device.

    Build one with :func:`to_simulated` (or ``.to(DEVICE)`` while the simulation is on), never directly."""

    _inner: torch.Tensor
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, inner: torch.Tensor, requires_grad: bool = False) -> SimTensor:
        if isinstance(inner, SimTensor) or inner.device.type != "cpu":
            raise TypeError(f"SimTensor wraps a CPU tensor, got {type(inner).__name__} on {inner.device}")
        out = torch.Tensor._make_wrapper_subclass(
            cls, inner.shape, strides=inner.stride(), storage_offset=inner.storage_offset(), dtype=inner.dtype,
            layout=inner.layout, device=_META, requires_grad=requires_grad)
        out._inner = inner
        return out

    def __init__(self, inner: torch.Tensor, requires_grad: bool = False) -> None:  # noqa: ARG002
        super().__init__()

    # ---- what CUDA allows or forbids from Python ----------------------------------------------------------------
    def numpy(self, *, force: bool = False):  # noqa: ARG002
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to "
                        "host memory first. (simulated GPU, XAI_DEVICE=sim)")

    def __array__(self, dtype=None, copy=None):  # noqa: ARG002
        self.numpy()

    def item(self):
        return self._inner.item()

    def tolist(self):
        return self._inner.tolist()

    def __format__(self, spec: str) -> str:
        if self.dim() == 0 and not self.is_nested:
            return self._inner.item().__format__(spec)
        return object.__format__(self, spec)

    def __repr__(self, *, tensor_contents=None) -> str:  # noqa: ARG002
        body = repr(self._inner)[:-1]
        extra = ", device='cuda:0'"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{type(self.grad_fn).__name__}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return body + extra + ")"

    def __reduce_ex__(self, protocol):  # noqa: ARG002
        return _rebuild_simulated, (self._inner.detach().clone(), bool(self.requires_grad))

    # ---- every ATen op ------------------------------------------------------------------------------------------
    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # noqa: ARG003
        kwargs = kwargs or {}
        flat, spec = tree_flatten((args, kwargs))
        if func not in _CROSS_DEVICE_OK:
            _check_devices(func, args, flat)
        inner = [_unwrap_arg(a) for a in flat]
        iargs, ikwargs = tree_unflatten(inner, spec)
        to_cpu = func is _aten._to_copy.default and kwargs.get("device") == _CPU
        out = func(*iargs, **ikwargs)
        if not to_cpu:
            out = _wrap_outputs(out)
        if func._schema.is_mutable or torch.Tag.inplace_view in func.tags or _returns_alias(func):
            return return_and_correct_aliasing(func, args, kwargs, out)
        return out


_ALIAS_CACHE: dict[Any, bool] = {}


def _returns_alias(func) -> bool:
    hit = _ALIAS_CACHE.get(func)
    if hit is None:
        hit = _ALIAS_CACHE[func] = any(r.alias_info is not None for r in func._schema.returns)
    return hit


def _device_error(func, other: torch.Tensor) -> RuntimeError:
    return RuntimeError(
        f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and {other.device}! "
        f"(in {func}; simulated GPU, XAI_DEVICE=sim: a tensor of shape {tuple(other.shape)} is still on the "
        f"{other.device.type.upper()}: move it with .to(DEVICE))")


def _check_devices(func, args, flat) -> None:
    """Raise as CUDA does when an op mixes simulated-device tensors with non-scalar CPU tensors."""
    skip: set[int] = set()
    if func in _INDEX_OPS and len(args) > 1:  # CPU indices are fine on CUDA
        skip = {id(t) for t in (args[1] if isinstance(args[1], (list, tuple)) else [args[1]]) if t is not None}
    for a in flat:
        if isinstance(a, torch.Tensor) and not isinstance(a, SimTensor) and id(a) not in skip:
            if a.device.type == "cpu" and a.dim() == 0:
                continue  # CUDA accepts CPU scalars
            raise _device_error(func, a)
        if isinstance(a, torch.Generator) and a._cdata not in _SIM_GENERATORS:
            raise RuntimeError("Expected a 'cuda' device type for generator but found 'cpu' (simulated GPU, "
                               "XAI_DEVICE=sim: create it with torch.Generator(device=x.device))")


def _has_list_index(index: Any) -> bool:
    return isinstance(index, list) or (isinstance(index, tuple) and any(isinstance(i, list) for i in index))


def _list_index_to_tensor(index: Any) -> Any:
    """``t[[1, 4]]`` / ``t[:, [1, 4]]``: the lists as CPU index tensors (as CUDA accepts them)."""
    if isinstance(index, list):
        return torch.tensor(index)
    return tuple(torch.tensor(i) if isinstance(i, list) else i for i in index)


def _unwrap_arg(a: Any) -> Any:
    if isinstance(a, SimTensor):
        return a._inner
    if isinstance(a, torch.device) and a.type == "meta":  # a factory op asked for "the device of this tensor"
        return _CPU
    return a


def _wrap_outputs(out: Any) -> Any:
    if isinstance(out, torch.Tensor) and not isinstance(out, SimTensor):
        return SimTensor(out) if out.device.type == "cpu" else out
    if isinstance(out, (list, tuple)):
        return type(out)(_wrap_outputs(o) for o in out)
    return out


def _rebuild_simulated(inner: torch.Tensor, requires_grad: bool) -> torch.Tensor:
    """Unpickle a saved simulated tensor: simulated again while the simulation is on, else the CPU tensor."""
    t = SimTensor(inner) if _STATE["active"] else inner
    return t.requires_grad_(requires_grad) if requires_grad else t


def is_simulated(t: Any) -> bool:
    """True for a tensor on the simulated GPU."""
    return isinstance(t, SimTensor)


class _ToSim(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ARG004
        return SimTensor(x.detach().clone())

    @staticmethod
    def backward(ctx, g):  # noqa: ARG004
        return g._inner.clone() if isinstance(g, SimTensor) else g


class _FromSim(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ARG004
        return x._inner.clone()

    @staticmethod
    def backward(ctx, g):  # noqa: ARG004
        return g if isinstance(g, SimTensor) else SimTensor(g.contiguous())


def to_simulated(t: torch.Tensor) -> torch.Tensor:
    """Copy a CPU tensor onto the simulated GPU (differentiable); a simulated tensor is returned as it is."""
    if isinstance(t, SimTensor):
        return t
    if t.device.type != "cpu":
        raise RuntimeError(f"the simulated GPU takes CPU tensors, got one on {t.device}")
    if t.requires_grad and torch.is_grad_enabled():
        return _ToSim.apply(t)
    return SimTensor(t.detach().clone())


def _to_cpu(t: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, SimTensor):
        return t
    if t.requires_grad and torch.is_grad_enabled():
        return _FromSim.apply(t)
    return t._inner.clone()


def _is_cuda(device: Any) -> bool:
    if device is None or isinstance(device, torch.Tensor):
        return False
    if isinstance(device, int):
        return True  # t.to(0) / device=0 means cuda:0
    try:
        return torch.device(device).type == "cuda"
    except (RuntimeError, TypeError):
        return False


def _is_cpu(device: Any) -> bool:
    try:
        return device is not None and not isinstance(device, int) and torch.device(device).type == "cpu"
    except (RuntimeError, TypeError):
        return False


# ---- placement calls from Python ----------------------------------------------------------------------------------
_T = torch.Tensor
_GETTERS = {"device": _T.device.__get__, "is_cuda": _T.is_cuda.__get__, "is_meta": _T.is_meta.__get__,
            "is_cpu": _T.is_cpu.__get__}


class _PlacementMode(TorchFunctionMode):
    """Turns CUDA placement calls into the simulated GPU; leaves every other call alone."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ARG002
        kwargs = kwargs or {}
        if args and isinstance(args[0], SimTensor):
            if func == _GETTERS["device"]:
                return _CUDA0
            if func == _GETTERS["is_cuda"]:
                return True
            if func == _GETTERS["is_meta"] or func == _GETTERS["is_cpu"]:
                return False
            if func is _T.get_device:
                return 0
        if func in (_T.__getitem__, _T.__setitem__) and isinstance(args[0], SimTensor) and _has_list_index(args[1]):
            # C++ turns a Python list index into a tensor on the advertised device (meta: no data, so the result
            # would be garbage); CUDA accepts CPU index tensors, so make the list one
            return func(args[0], _list_index_to_tensor(args[1]), *args[2:])
        if func is _T.__setitem__ and isinstance(args[0], SimTensor) and isinstance(args[2], (bool, int, float)):
            # C++ would wrap the number as a tensor on the advertised device (meta: no data); CUDA wraps it as a
            # CPU scalar, so do that
            return func(args[0], args[1], torch.tensor(args[2], dtype=args[0].dtype))
        if func is _T.to:
            return _tensor_to(func, args, kwargs)
        if func is _T.cuda:
            t = args[0]
            out = to_simulated(t)
            return out.to(memory_format=kwargs["memory_format"]) if "memory_format" in kwargs else out
        if func is _T.cpu:
            return _to_cpu(args[0])
        if func is _T.pin_memory:
            return args[0]
        if func is _T.is_pinned:
            return False
        gen = kwargs.get("generator")
        if "device" in kwargs and _is_cuda(kwargs["device"]):
            return _factory(func, args, kwargs)
        if gen is not None and getattr(gen, "_simulated", False) and not any(isinstance(a, SimTensor) for a in
                                                                              tree_flatten((args, kwargs))[0]):
            raise RuntimeError("Expected a 'cpu' device type for generator but found 'cuda' (simulated GPU, "
                               "XAI_DEVICE=sim)")
        return func(*args, **kwargs)


def _factory(func, args, kwargs):
    """``torch.zeros(..., device="cuda")`` and friends: make it on the CPU, then move it to the simulated GPU."""
    gen = kwargs.get("generator")
    if gen is not None and not getattr(gen, "_simulated", False):
        raise RuntimeError("Expected a 'cuda' device type for generator but found 'cpu' (simulated GPU, "
                           "XAI_DEVICE=sim: create it with torch.Generator(device=DEVICE))")
    kw = dict(kwargs, device=_CPU)
    requires_grad = bool(kw.pop("requires_grad", False))
    if any(isinstance(a, SimTensor) for a in tree_flatten(args)[0]):  # e.g. torch.tensor(sim, device="cuda")
        args = tuple(a._inner if isinstance(a, SimTensor) else a for a in args)
    out = func(*args, **kw)
    if isinstance(out, torch.Tensor):
        out = SimTensor(out.detach())
        if requires_grad:
            out.requires_grad_(True)
    elif isinstance(out, torch.nn.Parameter):
        pass
    return out


def _tensor_to(func, args, kwargs):
    t = args[0]
    rest, kw = list(args[1:]), dict(kwargs)
    device = kw.get("device")
    if rest and isinstance(rest[0], torch.Tensor):  # t.to(other): other's device and dtype
        other = rest.pop(0)
        device = _CUDA0 if isinstance(other, SimTensor) else other.device
        kw.setdefault("dtype", other.dtype)
    elif rest and (isinstance(rest[0], (str, int, torch.device)) or rest[0] is None):
        device = rest.pop(0)
        if rest and (isinstance(rest[0], torch.dtype) or rest[0] is None):
            kw["dtype"] = rest.pop(0)
    kw.pop("device", None)
    if rest and isinstance(rest[0], bool):  # non_blocking, copy (positional)
        kw["non_blocking"] = rest.pop(0)
        if rest and isinstance(rest[0], bool):
            kw["copy"] = rest.pop(0)
    if rest and isinstance(rest[0], torch.dtype):
        kw["dtype"] = rest.pop(0)
    kw = {k: v for k, v in kw.items() if not (k == "dtype" and v is None)}
    kw.pop("non_blocking", None)
    if _is_cuda(device):
        if isinstance(t, SimTensor):
            return t.to(**kw) if kw else t
        moved = to_simulated(t)
        return moved.to(**kw) if kw else moved
    if _is_cpu(device) and isinstance(t, SimTensor):
        cpu = _to_cpu(t)
        kw.pop("copy", None)
        return cpu.to(**kw) if kw else cpu
    if device is not None:
        kw["device"] = device
    return func(t, *rest, **kw)


class _MetaFactoryMode(TorchDispatchMode):
    """C++ code makes new tensors "on the device of" a simulated tensor, i.e. on ``meta``, where they have no data
    (autograd's zero gradients, ``where``'s scalar in a backward pass, a number assigned with ``t[i] = 0.5``): a
    factory op (no tensor argument) asked for ``device=meta`` makes its tensor on the simulated GPU instead."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ARG002
        kwargs = kwargs or {}
        device = kwargs.get("device")
        if isinstance(device, torch.device) and device.type == "meta" and not any(
                isinstance(a, torch.Tensor) for a in args):
            return SimTensor(func(*args, **dict(kwargs, device=_CPU)))
        return func(*args, **kwargs)


# ---- torch.cuda / torch.accelerator / torch.Generator while the simulation is on -----------------------------------
_ORIG_GENERATOR = torch._C.Generator
#: the C++ generators (``_cdata``) of the generators made with ``torch.Generator(device="cuda")``
_SIM_GENERATORS: set[int] = set()


class _GeneratorMeta(type(_ORIG_GENERATOR)):
    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, _ORIG_GENERATOR)

    def __subclasscheck__(cls, sub) -> bool:
        return issubclass(sub, _ORIG_GENERATOR)


class _SimGenerator(_ORIG_GENERATOR, metaclass=_GeneratorMeta):
    """``torch.Generator`` while the simulation is on: a CUDA generator is a CPU one marked ``_simulated``."""

    def __new__(cls, device: Any = "cpu"):
        if _is_cuda(device):
            g = super().__new__(cls, "cpu")
            g._simulated = True
            _SIM_GENERATORS.add(g._cdata)  # ops see a new Python object for it: know it by its C++ generator
            weakref.finalize(g, _SIM_GENERATORS.discard, g._cdata)
            return g
        return _ORIG_GENERATOR(device)

    def __init__(self, device: Any = "cpu") -> None:  # noqa: ARG002
        pass

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return _CUDA0


class _Stream:
    """Stands in for a CUDA stream: work is done when it is asked for, nothing is ever captured."""

    device = _CUDA0
    device_index = 0
    device_type = 1

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True

    def is_capturing(self) -> bool:
        return False

    def wait_stream(self, stream: Any) -> None:  # noqa: ARG002
        pass

    def wait_event(self, event: Any) -> None:  # noqa: ARG002
        pass

    def record_event(self, event: Any = None) -> _Event:
        event = event or _Event()
        event.record()
        return event

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class _Event:
    """Stands in for ``torch.cuda.Event``: ``elapsed_time`` is wall-clock milliseconds between two records."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False) -> None:  # noqa: ARG002
        self._t: float | None = None

    def record(self, stream: Any = None) -> None:  # noqa: ARG002
        self._t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def wait(self, stream: Any = None) -> None:  # noqa: ARG002
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, end: _Event) -> float:
        if self._t is None or end._t is None:
            raise RuntimeError("both events must be recorded before elapsed_time")
        return (end._t - self._t) * 1000.0


_STREAM = _Stream()
# T4-like answers; memory statistics are 0 because nothing is allocated on a device
_PROPS = types.SimpleNamespace(name=DEVICE_NAME, major=7, minor=5, total_memory=16 * 1024**3,
                               multi_processor_count=40, is_integrated=False, uuid="simulated")
_noop = lambda *a, **k: None  # noqa: E731
_zero = lambda *a, **k: 0  # noqa: E731
_CUDA_PATCHES: dict[str, Any] = {
    "is_available": lambda: True, "device_count": lambda: 1, "current_device": lambda: 0,
    "is_initialized": lambda: True, "init": _noop, "set_device": _noop, "synchronize": _noop,
    "empty_cache": _noop, "get_device_name": lambda *a, **k: DEVICE_NAME,
    "get_device_properties": lambda *a, **k: _PROPS, "get_device_capability": lambda *a, **k: (7, 5),
    "get_arch_list": lambda: ["sm_75"], "is_bf16_supported": lambda *a, **k: False,
    "manual_seed": _noop, "manual_seed_all": _noop, "seed": _noop, "seed_all": _noop,
    "initial_seed": lambda: torch.initial_seed(),
    "get_rng_state": lambda *a, **k: torch.zeros(16, dtype=torch.uint8),
    "get_rng_state_all": lambda: [torch.zeros(16, dtype=torch.uint8)],
    "set_rng_state": _noop, "set_rng_state_all": _noop,
    "memory_allocated": _zero, "max_memory_allocated": _zero, "memory_reserved": _zero,
    "max_memory_reserved": _zero, "reset_peak_memory_stats": _noop, "reset_max_memory_allocated": _noop,
    "reset_accumulated_memory_stats": _noop, "memory_stats": lambda *a, **k: {},
    "mem_get_info": lambda *a, **k: (_PROPS.total_memory, _PROPS.total_memory),
    "memory_summary": lambda *a, **k: "simulated GPU: no device memory is used",
    "current_stream": lambda *a, **k: _STREAM, "default_stream": lambda *a, **k: _STREAM,
    "Stream": lambda *a, **k: _Stream(), "stream": lambda *a, **k: contextlib.nullcontext(),
    "Event": _Event, "is_current_stream_capturing": lambda: False,
}
_ACCELERATOR_PATCHES: dict[str, Any] = {
    "is_available": lambda: True, "current_accelerator": lambda *a, **k: torch.device("cuda"),
    "device_count": lambda: 1, "current_device_index": lambda: 0, "current_device_idx": lambda: 0,
    "set_device_index": _noop, "set_device_idx": _noop, "synchronize": _noop, "empty_cache": _noop,
    "current_stream": lambda *a, **k: _STREAM, "set_stream": _noop,
    "memory_allocated": _zero, "max_memory_allocated": _zero, "memory_reserved": _zero,
    "max_memory_reserved": _zero, "reset_peak_memory_stats": _noop, "memory_stats": lambda *a, **k: {},
    "get_memory_info": lambda *a, **k: (_PROPS.total_memory, _PROPS.total_memory),
}
_STATE: dict[str, Any] = {"active": False, "modes": [], "saved": []}


def active() -> bool:
    """True while the simulated GPU is on."""
    return bool(_STATE["active"])


def activate() -> torch.device:
    """Turn the simulated GPU on (idempotent) for this thread and return ``torch.device("cuda")``.

    Patches ``torch.cuda`` (is_available, device_count, get_device_name/properties/capability, synchronize,
    manual_seed*, RNG state, memory statistics, streams and events), ``torch.accelerator`` (is_available,
    current_accelerator, device_count, current_stream, synchronize, memory statistics) and ``torch.Generator``,
    and enters the placement mode. :func:`deactivate` undoes all of it."""
    if _STATE["active"]:
        return torch.device("cuda")
    saved = []
    for module, patches in ((torch.cuda, _CUDA_PATCHES), (torch.accelerator, _ACCELERATOR_PATCHES)):
        for name, value in patches.items():
            saved.append((module, name, getattr(module, name, _MISSING)))
            setattr(module, name, value if isinstance(value, type) else _fresh(value, f"{module.__name__}.{name}"))
    saved.append((torch, "Generator", torch.Generator))
    torch.Generator = _SimGenerator  # type: ignore[misc]
    torch.serialization.add_safe_globals([_rebuild_simulated, SimTensor])
    modes = [_PlacementMode(), _MetaFactoryMode()]
    for mode in modes:
        mode.__enter__()
    _STATE.update(active=True, modes=modes, saved=saved)
    return torch.device("cuda")


_MISSING = object()


def _fresh(fn: Any, name: str) -> Any:
    """A new function object per patched name: torch._dynamo's trace rules fail when one function object stands
    for two torch functions that it treats differently (e.g. ``synchronize`` and ``empty_cache``)."""

    def patched(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    patched.__name__ = patched.__qualname__ = name.rsplit(".", 1)[-1]
    patched.__doc__ = f"{name} while the simulated GPU (XAI_DEVICE=sim) is on"
    return patched


def deactivate() -> None:
    """Turn the simulated GPU off: leave the placement mode and restore ``torch.cuda``, ``torch.accelerator`` and
    ``torch.Generator``. Simulated tensors made before stay simulated (their device checks still apply)."""
    if not _STATE["active"]:
        return
    for mode in reversed(_STATE["modes"]):
        mode.__exit__(None, None, None)
    for module, name, value in reversed(_STATE["saved"]):
        if value is _MISSING:
            delattr(module, name)
        else:
            setattr(module, name, value)
    _STATE.update(active=False, modes=[], saved=[])


@contextlib.contextmanager
def simulated() -> Iterator[torch.device]:
    """``with simulated() as device:`` the simulated GPU inside the block (tests); off again after it."""
    was_on = active()
    device = activate()
    try:
        yield device
    finally:
        if not was_on:
            deactivate()
