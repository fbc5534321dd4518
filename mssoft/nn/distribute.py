"""Choosing the ``tf.distribute`` strategy of a training run, in one function.

``get_strategy("auto")`` mirrors the model over every GPU when more than one is visible and
otherwise uses TensorFlow's default strategy (one device). Each strategy name maps to one small
factory in ``_FACTORIES``. ``multiworker`` runs one process per machine under
``MultiWorkerMirroredStrategy``, configured by the standard ``TF_CONFIG`` environment variable
(:func:`read_tf_config`); :func:`worker_role` tells a process whether it is the chief.

Two settings must be made before TensorFlow initialises, so :func:`get_strategy` should be the
first TensorFlow call of a process: the multi-worker strategy itself, and the split of the CPU
into logical devices asked for by the environment variable ``MSSOFT_LOGICAL_CPUS``
(:func:`configure_logical_cpus`; e.g. ``MSSOFT_LOGICAL_CPUS=2`` with ``--strategy mirrored
--devices CPU:0,CPU:1`` tries data parallelism without GPUs).

Importing this module imports TensorFlow; ``import mssoft`` does not.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from mssoft.choices import STRATEGIES
from mssoft.errors import ConfigError

__all__ = [
    "STRATEGIES",
    "LOGICAL_CPUS_VARIABLE",
    "TF_CONFIG_VARIABLE",
    "get_strategy",
    "describe_strategy",
    "visible_devices",
    "normalise_devices",
    "configure_logical_cpus",
    "read_tf_config",
    "WorkerRole",
    "worker_role",
    "is_multi_worker",
]

logger = logging.getLogger(__name__)

#: Environment variable: split the first CPU into this many logical devices (tests, trials).
LOGICAL_CPUS_VARIABLE = "MSSOFT_LOGICAL_CPUS"

#: Environment variable that describes the cluster to every worker of a multi-worker run.
TF_CONFIG_VARIABLE = "TF_CONFIG"


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


def _multiworker(devices: list[str] | None) -> tf.distribute.Strategy:
    if devices is not None:
        raise ConfigError(
            "Invalid value for `--devices`: strategy 'multiworker' uses every GPU of each worker "
            "(or its CPU); choose them per machine with CUDA_VISIBLE_DEVICES"
        )
    if read_tf_config() is None:
        logger.warning(
            "strategy 'multiworker' without %s: this process is the only worker", TF_CONFIG_VARIABLE
        )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as exc:  # "Collective ops must be configured at program startup"
        raise ConfigError(
            "Invalid value for `--strategy`: 'multiworker' must be set up before TensorFlow "
            f"initialises; start every worker as a new process (e.g. `mssoft fit`) ({exc})"
        ) from None


_FACTORIES: dict[str, Callable[[list[str] | None], tf.distribute.Strategy]] = {
    "default": _default,
    "mirrored": _mirrored,
    "multiworker": _multiworker,
}

assert set(STRATEGIES) == {"auto", *_FACTORIES}, "mssoft.choices.STRATEGIES and the factories"


def _auto(devices: list[str] | None) -> str:
    if devices is not None:
        return "mirrored" if len(devices) > 1 else "default"
    return "mirrored" if len(visible_devices("GPU")) > 1 else "default"


def get_strategy(
    name: str = "auto", devices: Sequence[str] | str | None = None
) -> tf.distribute.Strategy:
    """The distribution strategy to build and train a model under.

    Call it before any other TensorFlow operation of the process: it first applies
    ``MSSOFT_LOGICAL_CPUS`` (:func:`configure_logical_cpus`), and ``multiworker`` can only be set
    up while TensorFlow is not initialised.

    Parameters
    ----------
    name : {"auto", "default", "mirrored", "multiworker"}
        ``default``: TensorFlow's default strategy (one device; with ``devices``, a
        ``OneDeviceStrategy`` on that device). ``mirrored``: synchronous data parallelism over
        ``devices`` (default: all GPUs, or the CPU without GPU). ``auto``: ``mirrored`` when more
        than one GPU is visible (or several ``devices`` are given), else ``default``.
        ``multiworker``: ``MultiWorkerMirroredStrategy`` over the processes listed in
        ``TF_CONFIG`` (every GPU of each, or its CPU); train it with
        :func:`mssoft.nn.multiworker_loop.train_loop`, not ``model.fit``.
    devices : sequence of str, comma-separated str, or None
        Device names such as ``GPU:0``; every device must be visible. Not with ``multiworker``.

    Returns
    -------
    tf.distribute.Strategy
        Build and compile the model inside ``strategy.scope()`` and batch datasets with the global
        batch size.

    Raises
    ------
    ConfigError
        Unknown name, invisible or duplicated devices, several devices for ``default``, devices
        for ``multiworker``, a bad ``TF_CONFIG`` or ``MSSOFT_LOGICAL_CPUS``, or ``multiworker``
        after TensorFlow was initialised.
    """
    key = str(name).strip().lower()
    if key not in STRATEGIES:
        raise ConfigError(
            f"Invalid value for `--strategy`. Expected one of {', '.join(STRATEGIES)}. "
            f"Received: {name!r}"
        )
    configure_logical_cpus()
    if key == "multiworker":  # before anything that initialises TensorFlow (listing devices)
        strategy = _multiworker(None if devices is None else [str(devices)])
        _log(strategy)
        return strategy
    names = normalise_devices(devices)
    if key == "auto":
        key = _auto(names)
    strategy = _FACTORIES[key](names)
    _log(strategy)
    return strategy


def _log(strategy: tf.distribute.Strategy) -> None:
    info = describe_strategy(strategy)
    where = f" ({worker_role(strategy).describe()})" if is_multi_worker(strategy) else ""
    logger.info(
        "strategy %s: %d replica(s) on %s%s",
        info["name"],
        info["replicas"],
        ", ".join(info["devices"]),
        where,
    )


def describe_strategy(strategy: tf.distribute.Strategy) -> dict[str, Any]:
    """``{"name", "replicas", "devices"}`` of a strategy, for logs and ``config.json``."""
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: TensorFlow's own placement (first GPU, else CPU)
        devices = [
            (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0].name
        ]
    info: dict[str, Any] = {
        # TensorFlow's class behind tf.distribute.MultiWorkerMirroredStrategy is named
        # CollectiveAllReduceStrategy: report the public name
        "name": "MultiWorkerMirroredStrategy"
        if is_multi_worker(strategy)
        else type(strategy).__name__,
        "replicas": int(strategy.num_replicas_in_sync),
        "devices": [_short(d) for d in devices],
    }
    if is_multi_worker(strategy):
        info["workers"] = worker_role(strategy).num_workers
    return info


# === Logical CPU devices ===


def configure_logical_cpus(count: int | None = None) -> int | None:
    """Split the first CPU into ``count`` logical devices (``CPU:0``, ``CPU:1``, ...).

    Useful to try ``--strategy mirrored --devices CPU:0,CPU:1`` (and to test data parallelism)
    on a machine without GPUs. TensorFlow accepts this only before it initialises.

    Parameters
    ----------
    count : int, optional
        Number of logical CPU devices, >= 1. Default: the environment variable
        ``MSSOFT_LOGICAL_CPUS``; nothing is done when it is not set.

    Returns
    -------
    int or None
        The number of logical CPU devices configured, or None when nothing was asked.

    Raises
    ------
    ConfigError
        A count that is not an integer >= 1, or TensorFlow already initialised with another
        number of CPU devices.
    """
    source = f"environment variable {LOGICAL_CPUS_VARIABLE}"
    if count is None:
        text = os.environ.get(LOGICAL_CPUS_VARIABLE, "").strip()
        if not text:
            return None
        try:
            count = int(text)
        except ValueError:
            count = 0
    else:
        source = "`logical_cpus`"
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"Invalid value for {source}: expected an integer >= 1")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if len(current or [None]) == count:
        return count
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:  # "Virtual devices cannot be modified after being initialized"
        raise ConfigError(
            f"Invalid value for {source}: TensorFlow is already initialised in this process with "
            f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s); set "
            f"{LOGICAL_CPUS_VARIABLE}={count} before the process starts"
        ) from None
    logger.info("CPU split into %d logical devices (%s)", count, LOGICAL_CPUS_VARIABLE)
    return count


# === Multi-worker clusters ===


def read_tf_config(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The parsed and checked ``TF_CONFIG`` environment variable, or None when it is not set.

    Parameters
    ----------
    environ : mapping, optional
        The environment (default ``os.environ``).

    Returns
    -------
    dict or None
        ``{"cluster": {task type: ["host:port", ...]}, "task": {"type": str, "index": int}}``.

    Raises
    ------
    ConfigError
        Not JSON, or a ``task`` that is not in the ``cluster``.

    Examples
    --------
    >>> read_tf_config({"TF_CONFIG": '{"cluster": {"worker": ["localhost:12345"]}, '
    ...                               '"task": {"type": "worker", "index": 0}}'})["task"]
    {'type': 'worker', 'index': 0}
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG_VARIABLE, "").strip()
    if not text:
        return None
    where = f"Invalid value for environment variable {TF_CONFIG_VARIABLE}"
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: not JSON ({exc})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict):
        raise ConfigError(
            f'{where}: expected {{"cluster": {{"worker": ["host:port", ...]}}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    cluster, task = spec["cluster"], spec.get("task")
    if (
        not isinstance(task, dict)
        or not isinstance(task.get("type"), str)
        or isinstance(task.get("index"), bool)
        or not isinstance(task.get("index"), int)
    ):
        raise ConfigError(f'{where}: "task" must be {{"type": "worker", "index": N}}')
    hosts = cluster.get(task["type"])
    if not isinstance(hosts, list) or not 0 <= task["index"] < len(hosts):
        raise ConfigError(
            f"{where}: task {task['type']} {task['index']} is not in the cluster "
            f"{json.dumps(cluster)}"
        )
    return spec


@dataclass(frozen=True)
class WorkerRole:
    """Where this process stands in a cluster.

    Attributes
    ----------
    task_type : str or None
        ``"worker"`` or ``"chief"``; None without a cluster (a single process).
    task_id : int
        Index of the task within its type.
    num_workers : int
        Processes in the cluster (1 without a cluster).
    is_chief : bool
        This process writes the run folder: the ``chief`` task, or worker 0 when the cluster has
        no ``chief``, or the only process.
    """

    task_type: str | None
    task_id: int
    num_workers: int
    is_chief: bool

    def describe(self) -> str:
        """E.g. ``"worker 1 of 2 (not chief)"``."""
        if self.task_type is None:
            return "single process"
        role = "chief" if self.is_chief else "not chief"
        return f"{self.task_type} {self.task_id} of {self.num_workers} ({role})"


def worker_role(strategy: tf.distribute.Strategy) -> WorkerRole:
    """The :class:`WorkerRole` of this process under ``strategy`` (any strategy)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type is None:
        return WorkerRole(None, 0, 1, True)
    task_id = int(resolver.task_id or 0)
    cluster = resolver.cluster_spec().as_dict()
    num_workers = len(cluster.get("worker", ())) + len(cluster.get("chief", ()))
    is_chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster
    )
    return WorkerRole(task_type, task_id, max(num_workers, 1), is_chief)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` (Keras ``fit`` fails under it)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
