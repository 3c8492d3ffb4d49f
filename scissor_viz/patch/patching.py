"""The class swap: :func:`apply_patch` gives a model a subclass of its own class (same name) whose
``forward`` / ``generate`` run ``model.scissor.prepare`` first, as ToMe does;
:func:`remove_patch` gives it its class back."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from scissor_viz.patch.registry import adapter_for
from scissor_viz.patch.state import ScissorState, Setting
from scissor_viz.scc import check_epsilon, check_seed

_PATCHED: dict[type, type] = {}


def _restore_prompt(out: Any, input_ids: torch.Tensor, new_length: int) -> Any:
    """generate's sequences with the caller's prompt ids in front of the new tokens, as stock."""
    sequences = out if isinstance(out, torch.Tensor) else out.sequences
    factor = sequences.shape[0] // input_ids.shape[0]  # beams / num_return_sequences
    prompt = input_ids.repeat_interleave(factor, 0).to(sequences.device)
    full = torch.cat([prompt, sequences[:, new_length:]], dim=1)
    if isinstance(out, torch.Tensor):
        return full
    out.sequences = full
    return out


def _patched_class(base: type) -> type:
    """``base`` with ``forward`` and ``generate`` that splice SCC's tokens first (same name,
    so configs, saving and the loss type see the stock class)."""
    if base in _PATCHED:
        return _PATCHED[base]
    forward_names = list(inspect.signature(base.forward).parameters)[1:]
    generate_names = list(inspect.signature(base.generate).parameters)[1:]

    @functools.wraps(base.forward)
    def forward(self, *args, **kwargs):
        kwargs.update(zip(forward_names, args))
        new = self.scissor.prepare(kwargs, generate=False)
        return base.forward(self, **(kwargs if new is None else new))

    @functools.wraps(base.generate)
    def generate(self, *args, **kwargs):
        kwargs.update(zip(generate_names, args))
        if isinstance(kwargs.get("inputs"), torch.Tensor) and "input_ids" not in kwargs:
            kwargs["input_ids"] = kwargs.pop("inputs")
        with torch.no_grad():
            new = self.scissor.prepare(kwargs, generate=True)
        if new is None:
            return base.generate(self, **kwargs)
        out = base.generate(self, **new)
        return _restore_prompt(out, kwargs["input_ids"], new["input_ids"].shape[1])

    def __reduce_ex__(self, protocol):
        """Pickle (and copy) as the stock model plus the settings, patched again on load."""
        stock = base.__new__(base)
        stock.__dict__.update(self.__dict__)
        del stock.__dict__["scissor"]  # it refers to the model through its adapter
        return _repatch, (stock, self.scissor.setting)

    namespace = {
        "forward": forward,
        "generate": generate,
        "__reduce_ex__": __reduce_ex__,
        "_scissor_base": base,
    }
    namespace.update(__module__=base.__module__, __qualname__=base.__qualname__)
    _PATCHED[base] = type(base.__name__, (base,), namespace)
    return _PATCHED[base]


def _repatch(model: Any, setting: Setting) -> Any:
    """Unpickling a patched model: the stock model, patched with the same settings."""
    return apply_patch(
        model, setting.retention, tau=setting.tau, epsilon=setting.epsilon, seed=setting.seed
    )


def apply_patch(
    model: Any,
    retention: float | None = None,
    *,
    tau: float | None = None,
    epsilon: float = 0.05,
    seed: int = 0,
) -> Any:
    """Make ``model`` compress its video tokens with SCC; returns the model (patched in place).

    Give ``retention`` (a ratio in (0, 1]) or ``tau`` (a finite number); ``epsilon`` (in
    [0, 1)) and ``seed`` (a whole number in [0, 2**63)) go to the engine. Each is checked
    here, with the engine's rules: a ValueError leaves the model as it was. Patching a patched
    model only changes its settings.
    """
    epsilon, seed = check_epsilon(epsilon), check_seed(seed)
    state = getattr(model, "scissor", None)
    if isinstance(state, ScissorState):
        state.configure(retention, tau)
        state.epsilon, state.seed = epsilon, seed
        return model
    adapter = adapter_for(model)
    state = ScissorState(adapter, retention, tau, epsilon=epsilon, seed=seed)
    model.__class__ = _patched_class(type(model))
    model.scissor = state
    return model


def remove_patch(model: Any) -> Any:
    """Undo :func:`apply_patch` (a no-op on an unpatched model); returns the model."""
    base = type(model).__dict__.get("_scissor_base")
    if base is not None:
        model.__class__ = base
    if isinstance(getattr(model, "scissor", None), ScissorState):
        del model.scissor
    return model
