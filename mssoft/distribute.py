"""Choosing the ``tf.distribute`` strategy of a training run, in one function.

``get_strategy("auto")`` mirrors the model over every GPU when more than one is visible and
otherwise uses TensorFlow's default strategy (one device). Each strategy name maps to one small
factory in ``_FACTORIES``; a new strategy (e.g. multi-worker) is one more factory and one more
entry. Importing this module imports TensorFlow; ``import mssoft`` does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from mssoft.errors import ConfigError

__all__ = [
    "STRATEGIES",
    "get_strategy",
    "describe_strategy",
    "visible_devices",
    "normalise_devices",
]

logger = logging.getLogger(__name__)


def visible_devices(device_type: str | None = None) -> list[str]:
    """Names (``"CPU:0"``, ``"GPU:1"``, ...) of the logical devices TensorFlow sees."""
    return [_short(d.name) for d in tf.config.list_logical_devices(device_type)]


def _short(name: str) -> str:
    spec = tf.DeviceSpec.from_string(name)
    return f"{(spec.device_type or '').upper()}:{spec.device_index or 0}"


def normalise_devices(devices: Sequence[str] | str | None) -> list[str] | None:
    """Check device names against the visible devices and return them as ``"GPU:0"``, ...

    Parameters
    ----------
    devices : sequence of str, comma-separated str, or None
        Names such as ``GPU:0``, ``/gpu:1`` or ``/device:CPU:0``. None means "not given".

    Raises
    ------
    ConfigError
        An unparsable, duplicated or invisible device, or an empty list.
    """
    if devices is None:
        return None
    if isinstance(devices, str):
        devices = [d for d in devices.split(",") if d.strip()]
    if not devices:
        raise ConfigError("Invalid value for `--devices`: empty list")
    visible = visible_devices()
    names = []
    for device in devices:
        try:
            name = _short(device.strip())
        except ValueError:
            raise ConfigError(
                f"Invalid value for `--devices`: cannot parse {device!r} (expected e.g. GPU:0)"
            ) from None
        if name not in visible:
            raise ConfigError(
                f"Invalid value for `--devices`: {device} is not visible "
                f"(visible: {', '.join(visible)})"
            )
        if name in names:
            raise ConfigError(f"Invalid value for `--devices`: {device} is listed twice")
        names.append(name)
    return names


def _default(devices: list[str] | None) -> tf.distribute.Strategy:
    if devices is None:
        return tf.distribute.get_strategy()
    if len(devices) > 1:
        raise ConfigError(
            f"Invalid value for `--devices`: strategy 'default' runs on one device, got "
            f"{', '.join(devices)}; use --strategy mirrored"
        )
    return tf.distribute.OneDeviceStrategy(devices[0])


def _mirrored(devices: list[str] | None) -> tf.distribute.Strategy:
    if devices is None and len(visible_devices("GPU")) < 2:
        logger.warning("strategy 'mirrored' with fewer than 2 GPUs visible: one replica only")
    return tf.distribute.MirroredStrategy(devices)


_FACTORIES: dict[str, Callable[[list[str] | None], tf.distribute.Strategy]] = {
    "default": _default,
    "mirrored": _mirrored,
}

#: Names accepted by :func:`get_strategy`.
STRATEGIES: tuple[str, ...] = ("auto", *_FACTORIES)


def _auto(devices: list[str] | None) -> str:
    if devices is not None:
        return "mirrored" if len(devices) > 1 else "default"
    return "mirrored" if len(visible_devices("GPU")) > 1 else "default"


def get_strategy(
    name: str = "auto", devices: Sequence[str] | str | None = None
) -> tf.distribute.Strategy:
    """The distribution strategy to build and train a model under.

    Parameters
    ----------
    name : {"auto", "default", "mirrored"}
        ``default``: TensorFlow's default strategy (one device; with ``devices``, a
        ``OneDeviceStrategy`` on that device). ``mirrored``: synchronous data parallelism over
        ``devices`` (default: all GPUs, or the CPU without GPU). ``auto``: ``mirrored`` when more
        than one GPU is visible (or several ``devices`` are given), else ``default``.
    devices : sequence of str, comma-separated str, or None
        Device names such as ``GPU:0``; every device must be visible.

    Returns
    -------
    tf.distribute.Strategy
        Build and compile the model inside ``strategy.scope()`` and batch datasets with the global
        batch size.

    Raises
    ------
    ConfigError
        Unknown name, invisible or duplicated devices, or several devices for ``default``.
    """
    key = str(name).strip().lower()
    if key not in STRATEGIES:
        raise ConfigError(
            f"Invalid value for `--strategy`. Expected one of {', '.join(STRATEGIES)}. "
            f"Received: {name!r}"
        )
    names = normalise_devices(devices)
    if key == "auto":
        key = _auto(names)
    strategy = _FACTORIES[key](names)
    info = describe_strategy(strategy)
    logger.info(
        "strategy %s: %d replica(s) on %s",
        info["name"],
        info["replicas"],
        ", ".join(info["devices"]),
    )
    return strategy


def describe_strategy(strategy: tf.distribute.Strategy) -> dict[str, Any]:
    """``{"name", "replicas", "devices"}`` of a strategy, for logs and ``config.json``."""
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: TensorFlow's own placement (first GPU, else CPU)
        devices = [
            (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0].name
        ]
    return {
        "name": type(strategy).__name__,
        "replicas": int(strategy.num_replicas_in_sync),
        "devices": [_short(d) for d in devices],
    }
