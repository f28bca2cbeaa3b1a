"""Data-parallel training on several machines: ``tf.distribute.MultiWorkerMirroredStrategy``
configured from ``TF_CONFIG``, as TensorFlow documents it ("Multi-worker training with Keras").

``python -m vision train DATA ... --distributed`` runs on every machine with the same arguments
and its own ``TF_CONFIG``. How a run goes, and why:

* ``start_cluster`` reads ``TF_CONFIG`` (before importing TensorFlow: a bad one fails in a
  second) and creates the strategy before any other TensorFlow op of the process: the strategy
  starts this task's gRPC server and configures collective ops, which TensorFlow allows only
  before its runtime initialises. It returns when every task has joined.
* Every task loads the same data and builds the same seeded pipeline. ``--batch-size`` stays the
  *global* batch: each step, each of the N tasks trains on its 1/N of the batch (Keras splits it)
  and the gradients are all-reduced, so steps per epoch, the learning-rate schedule and the
  recipe the bundle records are those of a one-machine run; the result differs from one mainly
  by per-task dropout draws, how an uneven last batch is averaged, and the order of float sums.
* Sharding (``shard_by_data``): ``AutoShardPolicy.DATA``, set explicitly. ``FILE`` needs a
  dataset read from several files, and ours are in-memory arrays or a list of image paths
  decoded through ``numpy_function`` and ``.cache()``\\ d, so ``AUTO`` would fall back to DATA
  with a warning; ``OFF`` would make every task train on the same examples. Under DATA every
  task runs the whole pipeline (decode, cache, seeded shuffle, augment) and keeps its share of
  each batch: the seeded shuffle is what makes the shares disjoint, and it is why every task
  must read the same images. The repeated decoding and augmenting is DATA's price.
* Every task runs the same number of steps: they all see the same number of batches, and a
  last batch too small to split hands some tasks an empty share rather than a step fewer
  (checked: 33 examples in batches of 32 on two tasks, two steps each).
* Early stopping stops everyone together: the epoch's logs Keras gives the callbacks are read
  from its metric variables, which are ``ON_READ`` sums over every task, so each task's
  ``EarlyStopping`` sees the same ``val_loss`` and stops at the same epoch.
* Only the chief (task type ``chief``, else worker 0) writes the bundle; the others go through
  the same save into a temporary folder that is deleted (Keras's multi-worker guidance: saving
  happens everywhere, so every task stays in step to the end) and write no TensorBoard logs.
* A task that dies or freezes: TensorFlow's coordination service (which the strategy starts on
  the chief) stops hearing its heartbeats and aborts the collective ops of everyone else, who
  fail with ``VisionError`` naming the task that stopped responding. Measured on one machine
  (2 tasks, 2 CPU cores, the CLI): the survivor has printed its error and exited 2.2-8.4 s after
  its peer's process was killed (sooner when it notices the closed connection before the missing
  heartbeats), 8.9-9.2 s after the peer was frozen (``SIGSTOP``: heartbeats stop, as when a
  machine drops off the network), whether the lost task was the chief or a worker. No timeout of
  ours is added: the collectives' own ``CommunicationOptions(timeout_seconds=...)`` is, per
  TensorFlow, for debugging only (a thread per collective). Not bounded: waiting at the start
  for tasks that never join, and a task alive but stuck outside TensorFlow (heartbeats go on).

Keras 3 (3.15) does not run ``fit`` under this strategy as released (keras-team/keras#20585):
it all-reduces a whole input batch to get its shapes, and averages each step's scalar logs along
an axis they do not have. ``fit_guard`` corrects those two functions while a multi-worker fit runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator

from vision.errors import TrainingConfigError

#: Task types that train. TF_CONFIG's "evaluator" and "ps" belong to other set-ups.
TRAINING_TASKS = ("chief", "worker")
README_SECTION = "README, 'Training on several machines'"
_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}')

_strategy: Any = None
_cluster: Cluster | None = None


@dataclass(frozen=True)
class Cluster:
    """The tasks ``TF_CONFIG`` names and which one this process is."""

    tasks: dict[str, tuple[str, ...]]  # "chief" / "worker" -> addresses "host:port"
    task_type: str
    task_index: int

    @property
    def size(self) -> int:
        return sum(len(addresses) for addresses in self.tasks.values())

    @property
    def is_chief(self) -> bool:
        """The task that writes the bundle: the chief, or worker 0 in a cluster without one."""
        if "chief" in self.tasks:
            return self.task_type == "chief"
        return self.task_index == 0

    @property
    def name(self) -> str:
        return self.describe(self.task_type, self.task_index)

    def describe(self, task_type: str, index: int) -> str:
        addresses = self.tasks.get(task_type, ())
        where = f" ({addresses[index]})" if 0 <= index < len(addresses) else ""
        return f"{task_type} {index}{where}"

    @property
    def chief(self) -> str:
        return self.describe("chief", 0) if "chief" in self.tasks else self.describe("worker", 0)


def read_cluster(environ: dict[str, str] | None = None) -> Cluster:
    """The cluster ``TF_CONFIG`` describes, checked; TensorFlow is not imported.

    Raises:
        TrainingConfigError: ``TF_CONFIG`` is missing, not JSON, or not a cluster this task is in.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        raise TrainingConfigError(
            "--distributed needs TF_CONFIG: the same cluster on every machine and this machine's task, e.g. "
            f"TF_CONFIG='{_EXAMPLE}' on host1 and index 1 on host2 (see the {README_SECTION})")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise TrainingConfigError(f"TF_CONFIG is not valid JSON ({error}); expected e.g. {_EXAMPLE}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TrainingConfigError(f"TF_CONFIG needs a 'cluster' and a 'task' object; expected e.g. {_EXAMPLE}")
    others = sorted(set(cluster) - set(TRAINING_TASKS))
    if others:
        raise TrainingConfigError(f"TF_CONFIG's cluster has {', '.join(others)} tasks; data-parallel training "
                                  "runs 'chief' and 'worker' tasks only")
    tasks: dict[str, tuple[str, ...]] = {}
    for kind, addresses in cluster.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and re.fullmatch(r"[^\s:]+:\d{1,5}", a) for a in addresses)):
            raise TrainingConfigError(f"TF_CONFIG's cluster '{kind}' must be a list of \"host:port\"; "
                                      f"got {addresses!r}")
        tasks[kind] = tuple(addresses)
    if not tasks:
        raise TrainingConfigError(f"TF_CONFIG's cluster names no workers; expected e.g. {_EXAMPLE}")
    if len(tasks.get("chief", ())) > 1:
        raise TrainingConfigError("TF_CONFIG names more than one chief; a cluster has at most one")
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in tasks or not isinstance(index, int) or not 0 <= index < len(tasks[kind]):
        raise TrainingConfigError(f"TF_CONFIG's task {task!r} is not in its cluster "
                                  f"({', '.join(f'{k}: {len(v)}' for k, v in tasks.items())})")
    return Cluster(tasks, kind, index)


def start_cluster(environ: dict[str, str] | None = None) -> Cluster:
    """Read ``TF_CONFIG`` and create the strategy; call it before anything else touches
    TensorFlow. Returns once every task has joined (TensorFlow waits for them). Idempotent.

    Raises:
        TrainingConfigError: a bad ``TF_CONFIG`` (``read_cluster``), or TensorFlow already ran
            ops in this process, too late to configure collective ops.
    """
    global _strategy, _cluster
    if _strategy is not None:
        return _cluster  # type: ignore[return-value]
    cluster = read_cluster(environ)
    if environ is not None:
        os.environ["TF_CONFIG"] = environ["TF_CONFIG"]  # what TFConfigClusterResolver reads
    import tensorflow as tf  # lazy: a bad TF_CONFIG fails without paying for TensorFlow

    try:
        _strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:  # "Collective ops must be configured at program startup"
        raise TrainingConfigError(
            f"multi-machine training must start before anything else in the process uses TensorFlow ({error}); "
            "start it from `python -m vision train ... --distributed`, or call start_cluster() first") from None
    _cluster = cluster
    return cluster


def strategy() -> Any:
    """The process's ``MultiWorkerMirroredStrategy``, created now if ``start_cluster`` has not run."""
    if _strategy is None:
        start_cluster()
    return _strategy


def shard_by_data(dataset: Any) -> Any:
    """``dataset`` with ``AutoShardPolicy.DATA``: each task keeps its share of every batch (see above)."""
    import tensorflow as tf  # lazy: TensorFlow loads after TF_CONFIG is checked

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def fit_guard(strategy: Any) -> Iterator[None]:
    """Around ``model.fit``: under a multi-worker strategy, Keras with its two functions corrected
    (keras-team/keras#20585); under any other strategy, nothing changes."""
    import tensorflow as tf  # lazy: TensorFlow loads after TF_CONFIG is checked
    from keras.src.backend.tensorflow import trainer  # lazy: TensorFlow loads after TF_CONFIG is checked

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    reduce, build = trainer.reduce_per_replica, trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        # Keras averages each step's logs "along axis 0"; they are scalars: average them across tasks.
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce(values, strategy, reduction)

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> Any:
        # Keras all-reduces a whole first batch only to learn its shapes: this task's share tells them.
        if iterator is None or not trainer._collective_all_reduce_multi_worker(self.distribute_strategy):
            return build(self, iterator=iterator, data_batch=data_batch)
        local = self.distribute_strategy.experimental_local_results
        for _, _, batches in iterator:
            data_batch = tf.nest.map_structure(
                lambda v: local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v, next(batches))
            break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    try:
        yield
    finally:
        trainer.reduce_per_replica = reduce
        trainer.TensorFlowTrainer._maybe_symbolic_build = build


def lost_peer(error: Any) -> bool:
    import tensorflow as tf  # lazy: TensorFlow loads after TF_CONFIG is checked

    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError)
    return isinstance(error, lost) or "Collective ops is aborted" in str(error)


def peer_message(cluster: Cluster, error: Any) -> str:
    text = str(error)
    found = [(kind, int(index)) for kind, index in re.findall(r"/job:(chief|worker)/replica:\d+/task:(\d+)", text)]
    peers = [task for task in found if task != (cluster.task_type, cluster.task_index)]
    if peers:
        who = cluster.describe(*peers[0])
    elif "CoordinationService" in text:
        who = cluster.chief  # the coordination service runs on the chief
    else:
        who = "another task"
    if "heartbeat" in text.lower() and "Deadline" not in text:
        why = "it stopped sending heartbeats"
    elif "Deadline" in text:
        why = "it did not answer in time"
    elif re.search(r"connection reset|socket closed|connection refused|failed to connect", text, re.I):
        why = "its connection closed"
    else:
        why = type(error).__name__
    return (f"a peer stopped responding: {who}: {why}. Training stopped on {cluster.name} and nothing was saved; "
            "start the run again on every machine")
