"""A compiled training model kept for the next run of the same network in one process.

Keras traces a model's training and validation steps into TensorFlow graphs at the first
batch of its first ``fit``, and TensorFlow then optimises those graphs and sets up their
kernels. For the paper's U-Net (16 filters, 256 x 256 slices) that costs 4-5 s of every run's
first epoch on 2 CPU cores, and a fresh model pays it again even when its network, optimizer
and loss are the same as the last run's. ``mssoft cv`` runs many such runs in one process,
one per cell.

Inside :func:`keep_compiled_models`, :func:`kept_or_built` keeps the last model it returned.
A later run with the same key still builds its model (its seeded initial weights are the
run's starting point), then copies that model's variables and its optimizer's freshly built
variables into the kept model and trains the kept one, whose traced steps are reused. The
arithmetic is the same: the trained weights equal those of a fresh model, bit for bit
(``tests/test_model_reuse.py``).

Only a model whose training graph is fully described by the key may be kept: the caller
puts everything that shapes the graph into the key (network, input channels, optimizer and
learning-rate schedule, loss, dtype policy, XLA) and passes no key under a distribution
strategy other than TensorFlow's default one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Hashable, Iterator
from typing import Any

__all__ = ["keep_compiled_models", "kept_or_built"]

logger = logging.getLogger(__name__)

#: Inside :func:`keep_compiled_models`, a list of at most one (key, model): the last model
#: :func:`kept_or_built` returned with a key; None outside it (nothing is kept).
_kept: list[tuple[Hashable, Any]] | None = None


@contextlib.contextmanager
def keep_compiled_models() -> Iterator[None]:
    """Keep the last compiled model of :func:`kept_or_built` for later runs in this context.

    One model is kept at a time (the last key's); it is dropped when the outermost context ends
    (a context inside another shares the outer one's model).
    """
    global _kept
    if _kept is not None:
        yield
        return
    _kept = []
    try:
        yield
    finally:
        _kept = None


def kept_or_built(build: Callable[[], Any], key: Hashable | None) -> Any:
    """The model to train: ``build()``'s, or the kept one set to ``build()``'s starting state.

    Parameters
    ----------
    build : callable
        Returns a new compiled Keras model (call it inside the strategy's scope; it runs in
        every case, so the random number generators advance as without reuse).
    key : hashable or None
        Everything that shapes the compiled training graph; None never reuses nor keeps.

    Returns
    -------
    keras.Model
        The kept model, when one of the same key is kept inside :func:`keep_compiled_models`
        and has the same variables: its variables and optimizer variables then hold the
        values ``build()``'s model starts with, and its metrics are reset. Otherwise
        ``build()``'s model, which is kept (inside the context, with a key) for the next call.
    """
    model = build()
    if _kept is None or key is None:
        return model
    if _kept and _kept[0][0] == key and _copy_start(model, _kept[0][1]):
        logger.info("training the compiled model of the previous run (same network and key)")
        return _kept[0][1]
    _kept[:] = [(key, model)]
    return model


def _copy_start(source: Any, target: Any) -> bool:
    """Give ``target`` the variables ``source`` starts training with; False if they differ.

    The optimizer's variables (step count, moments, a loss scale) are built on ``source``'s
    optimizer first, so they hold their initial values whatever optimizer it is.
    """
    source.optimizer.build(source.trainable_variables)
    pairs = [
        *zip(source.variables, target.variables, strict=False),
        *zip(source.optimizer.variables, target.optimizer.variables, strict=False),
    ]
    counts = (len(source.variables), len(source.optimizer.variables))
    if counts != (len(target.variables), len(target.optimizer.variables)) or any(
        a.shape != b.shape or a.dtype != b.dtype for a, b in pairs
    ):
        return False
    for a, b in pairs:
        b.assign(a)
    target.reset_metrics()
    target.stop_training = False
    return True
