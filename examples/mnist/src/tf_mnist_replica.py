"""Train a small digit classifier with TensorFlow parameter-server replication.

The script reads TF_CONFIG the way Azure ML sets it for a parameter-server job:

    {"cluster": {"ps": ["host:port"], "worker": ["host:port", "host:port"]},
     "task": {"type": "worker", "index": 0}, "environment": "cloud"}

- task type "ps": serves the model variables until it is stopped (it never exits by itself).
- task type "worker": trains the shared model asynchronously (between-graph replication).
  There is no chief task: worker 0 acts as chief. It initialises the variables, writes the
  checkpoint and prints the test accuracy as a line such as `accuracy=0.9805`.
  A "master" or "chief" task, as older launchers name it, counts as a worker placed before
  the others.
- no TF_CONFIG: the same model trains in this single process.

Every worker trains until the shared global step reaches --train_steps.

Metrics go to MLflow when the job is tracked (Azure ML and amlctl's local backend both set
MLFLOW_TRACKING_URI and MLFLOW_RUN_ID in every process, so all of them log into the job's one
run; `mlflow-skinny` is enough): every worker logs its mean training `loss` every --log_every
steps, worker 0 also the test `accuracy`, and the final `accuracy` at the end. Without MLflow,
or outside a tracked job, the values are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Keep TensorFlow's C++ info lines and the oneDNN banner (printed before TF's log level
# applies) out of the run log when run by hand; set before TensorFlow loads. The manifest
# sets both for runs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf

v1 = tf.compat.v1

IMAGE_PIXELS = 64  # 8x8 digits, flattened
NUM_CLASSES = 10
HIDDEN_UNITS = 64
TEST_FRACTION = 0.2
REPORT_EVERY = 100  # steps between progress lines on the chief
# How often a non-chief worker checks whether the chief has initialised the variables.
# TensorFlow's default is 30 s, which would dominate a short run.
READY_POLL_SECS = 0.25
# Give up if the chief has not initialised the variables by then.
READY_TIMEOUT_SECS = 600


@dataclass(frozen=True)
class Task:
    """This process's role in a parameter-server cluster."""

    cluster: dict[str, list[str]]
    job: str  # "ps" or "worker"
    index: int

    @property
    def is_chief(self) -> bool:
        """Worker 0 does the chief's work: AML starts no separate chief."""
        return self.job == "worker" and self.index == 0


def read_task(tf_config: str | None) -> Task | None:
    """Parse TF_CONFIG; None means a single-process run."""
    if not tf_config:
        return None
    config = json.loads(tf_config)
    cluster = {job: list(hosts) for job, hosts in config.get("cluster", {}).items()}
    task = config.get("task", {})
    job, index = task.get("type", "worker"), int(task.get("index", 0))

    # Fold "master" / "chief" into the worker list, ahead of the workers.
    masters, chiefs = cluster.pop("master", []), cluster.pop("chief", [])
    offset = {"master": 0, "chief": len(masters), "worker": len(masters) + len(chiefs)}
    cluster["worker"] = masters + chiefs + cluster.get("worker", [])
    if job in offset:
        job, index = "worker", index + offset[job]

    if job not in ("ps", "worker"):
        raise SystemExit(f"TF_CONFIG task type {task.get('type')!r} is not ps or worker")
    if not cluster.get("ps"):
        raise SystemExit("TF_CONFIG has no ps task: this script needs a parameter server")
    if index >= len(cluster[job]):
        raise SystemExit(f"TF_CONFIG task index {index} is outside the {job} list")
    return Task(cluster=cluster, job=job, index=index)


def load_digits(input_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (train_x, train_y, test_x, test_y) from digits.npz.

    The split is fixed (seed 0) so every worker holds out the same test images.
    """
    with np.load(input_dir / "digits.npz") as data:
        x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = int(len(x) * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


@dataclass(frozen=True)
class Model:
    """The graph's handles that the training loop needs."""

    images: tf.Tensor
    labels: tf.Tensor
    loss: tf.Tensor
    accuracy: tf.Tensor
    train_step: tf.Tensor  # runs one update, returns the new global step
    global_step: tf.Variable


def build_model(learning_rate: float) -> Model:
    """A one-hidden-layer perceptron with softmax cross-entropy, trained by Adam."""
    images = v1.placeholder(tf.float32, [None, IMAGE_PIXELS], name="images")
    labels = v1.placeholder(tf.int64, [None], name="labels")
    init = v1.glorot_uniform_initializer(seed=1)
    w1 = v1.get_variable("hidden/weights", [IMAGE_PIXELS, HIDDEN_UNITS], initializer=init)
    b1 = v1.get_variable("hidden/biases", [HIDDEN_UNITS], initializer=v1.zeros_initializer())
    w2 = v1.get_variable("softmax/weights", [HIDDEN_UNITS, NUM_CLASSES], initializer=init)
    b2 = v1.get_variable("softmax/biases", [NUM_CLASSES], initializer=v1.zeros_initializer())

    hidden = tf.nn.relu(tf.matmul(images, w1) + b1)
    logits = tf.matmul(hidden, w2) + b2
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )
    correct = tf.equal(tf.argmax(logits, axis=1), labels)
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))

    global_step = v1.train.get_or_create_global_step()
    update = v1.train.AdamOptimizer(learning_rate).minimize(loss)
    with tf.control_dependencies([update]):
        # Yields the step count after this update, so the loop stops at exactly train_steps.
        train_step = global_step.assign_add(1)
    return Model(images, labels, loss, accuracy, train_step, global_step)


def open_session(is_chief: bool, target: str, config: v1.ConfigProto | None) -> v1.Session:
    """Open a session on initialised variables.

    The chief initialises them; every other worker polls until the chief has done so.
    """
    manager = v1.train.SessionManager(
        ready_op=v1.report_uninitialized_variables(),
        recovery_wait_secs=READY_POLL_SECS,
    )
    if is_chief:
        return manager.prepare_session(
            target, init_op=v1.global_variables_initializer(), config=config
        )
    return manager.wait_for_session(target, config=config, max_wait_secs=READY_TIMEOUT_SECS)


def metric_logger() -> Callable[[str, float, int], None]:
    """`log(key, value, step)`: mlflow.log_metric in a tracked job, else a print."""
    tracked = os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("MLFLOW_RUN_ID")
    try:
        import mlflow
    except ImportError:
        tracked = None
    if not tracked:
        return lambda key, value, step: print(f"metric {key}={value:.4f} step={step}",
                                              flush=True)
    mlflow.start_run()  # joins the job's run (MLFLOW_RUN_ID) before training starts
    return lambda key, value, step: mlflow.log_metric(key, value, step=step)


def train(args: argparse.Namespace, task: Task | None) -> None:
    """Build the graph, train until the shared step count is reached, report on the chief."""
    train_x, train_y, test_x, test_y = load_digits(Path(args.input_data))
    is_chief = task is None or task.is_chief
    worker_index = 0 if task is None else task.index

    target, config, device = "", None, None
    if task is not None:
        cluster = tf.train.ClusterSpec(task.cluster)
        # Device filters limit this worker's session to the parameter servers and itself.
        # Without them the workers depend on each other: a worker can stall or hang on
        # worker 0 once worker 0 has finished and exited.
        config = v1.ConfigProto(device_filters=["/job:ps", f"/job:worker/task:{task.index}"])
        server = tf.distribute.Server(
            cluster, job_name="worker", task_index=task.index, config=config
        )
        target = server.target
        # Variables live on the parameter servers; all computation stays on this worker.
        device = v1.train.replica_device_setter(
            worker_device=f"/job:worker/task:{task.index}", cluster=cluster
        )

    with tf.Graph().as_default():
        with v1.device(device):
            model = build_model(args.learning_rate)
        saver = v1.train.Saver()
        rng = np.random.default_rng(worker_index)

        log_metric = metric_logger()
        with open_session(is_chief, target, config) as sess:
            step = sess.run(model.global_step)
            next_report, next_log, losses = REPORT_EVERY, args.log_every, []
            while step < args.train_steps:
                batch = rng.integers(0, len(train_x), size=args.batch_size)
                feed = {model.images: train_x[batch], model.labels: train_y[batch]}
                step, loss = sess.run([model.train_step, model.loss], feed)
                losses.append(float(loss))
                # Other workers advance the step too, so compare rather than test for equality.
                if step >= next_log:
                    # The mean since the last point: a smoother curve than one batch's loss.
                    log_metric("loss", sum(losses) / len(losses), int(step))
                    if is_chief:
                        test = {model.images: test_x, model.labels: test_y}
                        log_metric("accuracy", float(sess.run(model.accuracy, test)), int(step))
                    losses, next_log = [], step + args.log_every
                if is_chief and step >= next_report:
                    print(f"step={step} loss={loss:.4f}", flush=True)
                    next_report = step + REPORT_EVERY

            if not is_chief:
                print(f"worker {worker_index}: done at global step {step}", flush=True)
                return
            os.makedirs(args.output_dir, exist_ok=True)
            path = saver.save(
                sess, os.path.join(args.output_dir, "model.ckpt"), global_step=model.global_step
            )
            print(f"checkpoint={path}", flush=True)
            accuracy = sess.run(model.accuracy, {model.images: test_x, model.labels: test_y})
            print(f"accuracy={accuracy:.4f}", flush=True)
            log_metric("accuracy", float(accuracy), int(step))


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line arguments; every role of the job gets the same list."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input_data",
        default=str(Path(__file__).parent.parent / "data"),
        help="folder holding digits.npz (default: the data folder next to this script's folder)",
    )
    parser.add_argument(
        "--train_steps", type=int, default=500, help="global training steps, shared by all workers"
    )
    parser.add_argument(
        "--log_every", type=int, default=10, help="steps between two points of the loss metric"
    )
    parser.add_argument("--batch_size", type=int, default=100, help="images per step")
    parser.add_argument("--learning_rate", type=float, default=0.01, help="Adam step size")
    parser.add_argument(
        "--output_dir", default="./outputs", help="where worker 0 writes the checkpoint"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run this process's role: parameter server, worker, or single process."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    task = read_task(os.environ.get("TF_CONFIG"))
    if task is not None and task.job == "ps":
        server = tf.distribute.Server(
            tf.train.ClusterSpec(task.cluster), job_name="ps", task_index=task.index
        )
        print(f"ps {task.index}: serving on {task.cluster['ps'][task.index]}", flush=True)
        # join() blocks in C++, where Python's KeyboardInterrupt never arrives: let Ctrl-C
        # (SIGINT) end the process directly, as SIGTERM does.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        server.join()  # never returns: the launcher stops this process
        return
    train(args, task)


if __name__ == "__main__":
    main()
