"""A sweep's steps as Ray tasks: `safeeval sweep FILE --ray ADDRESS` spreads a study over a cluster.

Each step is one Ray task running sweep.run_step, the code a local step runs, in a fresh worker process (as the local
sweep gives each step a fresh process). Ray does the scheduling: a task takes the outcomes of the steps it waits for
(Step.after) as arguments, so it starts once they are done, and as many run at once as the cluster's resources
allow. Nothing here queues or places work.

The store: workers on other machines cannot share one SQLite file (WAL is unsafe on network filesystems). A task
writes its generations and verdicts to a shard on its node's local disk, and reads what the shard lacks from the
study's store, served read-only by an actor on the driver's node. The shard comes back through Ray's object store
and the driver merges it as the task finishes (store.Store.merge: a key's first value kept, a differing one counted
and kept aside).

Run folders (checkpoints, adapters, results.json) go under the sweep's `runs`, which every node must reach at the same
path: a shared filesystem. A step runs on one node; one given several GPUs trains under accelerate's multi-process
launcher inside its task. Steps that span several nodes are not supported.

Faults: a worker that dies is Ray's to retry (max_retries); the step resumes from its last checkpoint and from its
shard (left on the node until sent) or the study's store. A step failing for its own reasons is reported with its
error; the steps that need it are skipped and the others go on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .errors import SafeevalError
from .files import store_path, write_json
from .keys import digest
from .progress import Reporter, Say, quiet_libraries, silent
from .store import Store, redirect, take_shard
from .sweep import MAX_RETRIES, Step, finished, load_sweep, run_step, write_report
from .train.config import TrainConfig

INSTALL = "Running a sweep on Ray needs Ray, an optional extra: pip install 'safeeval[ray]'."
RAY_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
# What sweep.json records of each step run: its state, where it ran, when (submitted and merged by the driver's clock,
# started and ended by its node's), the seconds its own work took, its error.
TIMELINE = ("status", "where", "submitted", "started", "ended", "work_seconds", "merge_seconds", "error", "traceback")


def import_ray():
    try:
        import ray
    except ImportError:
        raise SafeevalError(INSTALL) from None
    return ray


def run_on_ray(
    path: Path,
    address: str,
    reporter: Reporter = silent,
    say: Say = print,
    store: Path | None = None,
    data_dir: Path | None = None,
    verbose: bool = False,
) -> dict:
    """Run every step not finished yet as a Ray task, merge each task's shard into the study's store as it finishes,
    then write the leaderboard and report once; returns the summary, also written to RUNS/sweep.json.
    address: auto (a running cluster: `ray start`, RAY_ADDRESS), local (one started here for this sweep) or
    HOST:PORT. A caller already joined to a cluster (ray.init) keeps it."""
    ray = import_ray()
    spec, steps = load_sweep(path, data_dir)
    runs = Path(spec["runs"]).absolute()
    runs.mkdir(parents=True, exist_ok=True)
    study = Path(store_path(store)).absolute()
    Store(study).close()  # made, or upgraded, before any task reads it
    done = [s.name for s in steps if finished(spec, s)]
    if len(done) == len(steps):
        say(f"All {len(steps)} steps finished before; nothing to run.")
        return _summary(path, spec, steps, _Board(steps, done, say), {}, 0, time.time())
    started_here = _connect(ray, address, verbose)
    try:
        return _drive(ray, path, spec, steps, done, study, reporter, say, verbose)
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray, address: str, verbose: bool) -> bool:
    """Join (or start) the cluster; True when this call did, so it stops it too."""
    if ray.is_initialized():
        return False
    if address.startswith("ray://"):
        raise SafeevalError(
            "A Ray Client address (ray://) keeps the driver away from the cluster's nodes; run the "
            "sweep on a node of the cluster with --ray auto or --ray HOST:PORT."
        )
    local = {"include_dashboard": False} if address == "local" else {}
    try:
        ray.init(address=address, log_to_driver=verbose, **local)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SafeevalError(
            f"No Ray cluster to join at '{address}' ({str(exc).splitlines()[0]}): start one with "
            "`ray start --head` (other nodes join with `ray start --address HEAD:6379`), or use "
            "--ray local for one on this machine."
        ) from None
    return True


def _drive(
    ray, path, spec: dict, steps: list[Step], done: list[str], study: Path, reporter: Reporter, say: Say, verbose: bool
) -> dict:
    started = time.time()
    cluster = {name: ray.cluster_resources().get(name, 0) for name in ("CPU", "GPU")}
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    say(
        f"Ray cluster: {len(nodes)} node(s), {cluster['CPU']:g} CPUs, {cluster['GPU']:g} GPUs. {len(steps)} steps, "
        f"{len(done)} finished before (not run again)."
    )
    asked = {s.name: _resources(s, cluster["GPU"] > 0) for s in steps if s.name not in done}
    _say_unplaceable(asked, nodes, say)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    desk = ray.remote(num_cpus=0)(Desk).options(scheduling_strategy=here).remote(str(study))
    task = ray.remote(max_calls=1, num_returns=2)(step_task)
    runs = str(Path(spec["runs"]).absolute())
    ctx = {
        "cwd": os.getcwd(),
        "runs": runs,
        "store": str(study),
        "study": digest([str(study), runs]),
        "verbose": verbose,
    }
    retries = spec.get("max_retries", MAX_RETRIES)
    refs, submitted = {}, {}
    for step in steps:
        if step.name in asked:
            submitted[step.name] = time.time()
            waited = [refs[name][0] for name in step.after if name in refs]
            refs[step.name] = task.options(
                name=f"safeeval:{step.name}", max_retries=retries, retry_exceptions=False, **asked[step.name]
            ).remote(spec, step, ctx, desk, *waited)
    board = _Board(steps, done, say)
    pending = {refs[name][0] for name in refs}
    db = Store(study)
    try:
        with reporter("steps on Ray", len(refs)) as advance:
            while pending:
                ready = set(ray.wait(list(pending), num_returns=len(pending), timeout=1.0)[0])
                mail = ray.get(desk.drain.remote())  # shown after the outcomes: a start after the finish it followed
                for step in steps:  # in the sweep's order: a step after the ones it waits for
                    if step.name in refs and refs[step.name][0] in ready:
                        pending.discard(refs[step.name][0])
                        outcome = _collect(ray, db, board, refs[step.name], step)
                        board.outcome(step.name, {**outcome, "submitted": submitted[step.name]})
                        advance(1)
                board.notes(mail)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        say(f"Cancelled the {len(pending)} steps still running or waiting; finished ones are merged into the store.")
        raise
    finally:
        db.close()
    return _summary(path, spec, steps, board, cluster, len(nodes), started)


def _resources(step: Step, gpus: bool) -> dict:
    """What a step asks Ray for: the sweep file's, over the defaults (one CPU, and one GPU on a cluster with GPUs)."""
    return {"num_cpus": 1, "num_gpus": 1 if gpus else 0, **step.resources}


def _say_unplaceable(asked: dict, nodes: list[dict], say: Say) -> None:
    shapes = {json.dumps(r, sort_keys=True): [n for n, a in asked.items() if a == r] for r in asked.values()}
    for shape, names in shapes.items():
        need = {RAY_NAMES[k]: v for k, v in json.loads(shape).items() if v}
        if not any(all(n["Resources"].get(k, 0) >= v for k, v in need.items()) for n in nodes):
            say(
                f"note: {len(names)} step(s) ({names[0]}, ...) ask for {need}, which no node offers now; they wait "
                "until one does (an autoscaler may add it). A step runs on one node."
            )


class _Board:
    """The sweep's progress as the terminal shows it: each step's state and where it runs."""

    def __init__(self, steps: list[Step], done: list[str], say: Say):
        self.say = say
        self.total = len(steps)
        self.outcomes = {name: {"status": "finished", "before": True} for name in done}
        self.running: dict[str, str] = {}

    def notes(self, notes: list) -> None:
        for _, name, kind, text in notes:
            if kind == "started" and name not in self.outcomes:
                self.running[name] = text
                self.say(f"started  {name} on {text} [{self.counts()}]")
            elif kind == "say":
                self.say(f"  {name}: {text.strip()}")

    def outcome(self, name: str, outcome: dict) -> None:
        self.running.pop(name, None)
        self.outcomes[name] = outcome
        where = f" on {outcome['where']}" if outcome.get("where") else ""
        if outcome["status"] == "finished":
            self.say(f"finished {name}{where} in {outcome['ended'] - outcome['started']:.0f} s [{self.counts()}]")
        else:
            self.say(f"{outcome['status']:<8} {name}{where}: {outcome['error']} [{self.counts()}]")

    def counts(self) -> str:
        states = [o["status"] for o in self.outcomes.values()]
        waiting = self.total - len(states) - len(self.running)
        return (
            f"{states.count('finished')}/{self.total} finished, {len(self.running)} running, "
            f"{states.count('failed')} failed, {states.count('skipped')} skipped, {waiting} waiting"
        )


def _collect(ray, db: Store, board: _Board, refs: tuple, step: Step) -> dict:
    """A finished task's outcome; its shard merged into the study's store."""
    info, shard = refs
    try:
        outcome = ray.get(info)
    except ray.exceptions.RayError as exc:
        unmet = [n for n in step.after if board.outcomes.get(n, {}).get("status") != "finished"]
        if unmet:  # Ray does not run a task whose argument failed
            return {"status": "skipped", "error": f"it needs {', '.join(unmet)}, which did not finish"}
        return {"status": "failed", "error": _failure(ray, exc)}
    if outcome["status"] != "skipped":
        merging = time.time()
        outcome["merged"] = _merge(db, ray.get(shard))
        outcome["merge_seconds"] = round(time.time() - merging, 3)
    return outcome


def _failure(ray, exc) -> str:
    if isinstance(exc, ray.exceptions.TaskCancelledError):
        return "cancelled"
    if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
        return f"{type(exc.cause).__name__}: {exc.cause}"
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return f"{type(exc).__name__} (Ray's retries used up): {first}"


def _merge(db: Store, data: bytes) -> dict:
    if not data:
        return {}
    with tempfile.TemporaryDirectory(prefix="safeeval-shard-") as folder:
        shard = Path(folder) / "shard.sqlite"
        shard.write_bytes(data)
        return db.merge(shard)


def _summary(path, spec: dict, steps: list[Step], board: _Board, cluster: dict, nodes: int, started: float) -> dict:
    runs = Path(spec["runs"])
    ran = {name: o for name, o in board.outcomes.items() if not o.get("before")}
    failed = [name for name, o in ran.items() if o["status"] == "failed"]
    skipped = [name for name, o in ran.items() if o["status"] == "skipped"]
    scored = [s.name for s in steps if s.kind != "shared-sft"]
    if any(board.outcomes[name]["status"] == "finished" for name in scored):
        report = write_report(spec, runs, steps)
    else:  # nothing to report: the failures are the news
        report = {"missing": scored, "leaderboard": None, "html": None}
    merged: dict = {}
    for outcome in ran.values():
        for table, counts in (outcome.get("merged") or {}).items():
            for what, n in counts.items():
                merged.setdefault(table, {}).setdefault(what, 0)
                merged[table][what] += n
    summary = {
        "sweep": str(path),
        "steps": len(steps),
        "ran": len(ran),
        "finished_before": len(steps) - len(ran),
        "seconds": round(time.time() - started, 1),
        "step_seconds": {n: round(o["ended"] - o["started"], 1) for n, o in ran.items() if "ended" in o},
        "timeline": {n: {k: o.get(k) for k in TIMELINE} for n, o in ran.items()},
        "merged": merged,
        "failed": failed,
        "skipped": skipped,
        "ray": {"nodes": nodes, **cluster},
        **report,
    }
    write_json(runs / "sweep.json", summary)
    return summary


class Desk:
    """The driver's side of a study, for its tasks (an actor on the driver's node): the study's store, read-only,
    and a mailbox of progress notes the driver shows."""

    def __init__(self, store: str):
        self.store = Store(Path(store))
        self.mail: list = []

    def get_generations(self, keys: list[str]) -> dict:
        return self.store.get_generations(keys)

    def get_judgments(self, keys: list[str]) -> dict:
        return self.store.get_judgments(keys)

    def get_validation(self, judge: str) -> dict | None:
        return self.store.get_validation(judge)

    def note(self, step: str, kind: str, text: str) -> None:
        self.mail.append((time.time(), step, kind, text))

    def drain(self) -> list:
        mail, self.mail = self.mail, []
        return mail


class _Upstream:
    """The study's store, as a task's shard reads what it lacks: through the desk."""

    def __init__(self, ray, desk):
        self.ray, self.desk = ray, desk

    def get_generations(self, keys):
        return self.ray.get(self.desk.get_generations.remote(keys))

    def get_judgments(self, keys):
        return self.ray.get(self.desk.get_judgments.remote(keys))

    def get_validation(self, judge):
        return self.ray.get(self.desk.get_validation.remote(judge))


def step_task(spec: dict, step: Step, ctx: dict, desk, *waited: dict) -> tuple[dict, bytes]:
    """One step on a worker, as a Ray task: its outcome (for the driver, and for the steps that wait on it) and its
    store shard's bytes. A failure of the step's own is an outcome, not an exception, so Ray does not retry it and
    the shard of what it did make still comes back; a worker that dies is Ray's to retry."""
    import ray

    where = f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
    outcome = {"step": step.name, "where": where, "pid": os.getpid(), "started": time.time()}
    unmet = [w["step"] for w in waited if w["status"] != "finished"]
    if unmet:
        return {
            **outcome,
            "status": "skipped",
            "error": f"it needs {', '.join(unmet)}, which did not finish",
            "ended": time.time(),
        }, b""
    desk.note.remote(step.name, "started", where)
    working = time.time()  # the step's own work, from the libraries' imports on, as a local step's process does it
    quiet_libraries(ctx["verbose"])
    # on this node's disk, by study and step: a retry here resumes from what the killed attempt wrote
    shard = Path(tempfile.gettempdir()) / "safeeval-shards" / ctx["study"] / f"{step.name}.sqlite"
    error = None
    try:
        _enter(ctx["cwd"], ctx["runs"], where)
        with redirect(ctx["store"], shard, _Upstream(ray, desk)):
            processes = len(ray.get_gpu_ids())
            if processes > 1 and _trains(step):
                launch_training(step.train, processes, shard)
            run_step(spec, step, Path(ctx["store"]), silent, lambda text: desk.note.remote(step.name, "say", text))
        outcome["work_seconds"] = round(time.time() - working, 3)
    except SafeevalError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a step's own failure (bad data, out of memory) is reported, not retried
        error = f"{type(exc).__name__}: {exc}"
        outcome["traceback"] = traceback.format_exc()
    outcome.update(status="failed" if error else "finished", error=error, ended=time.time())
    return outcome, take_shard(shard)


def _enter(cwd: str, runs: str, where: str) -> None:
    """Work from the folder the sweep was started in (where it exists), so relative paths in the sweep file mean
    here what they mean there; and check that the runs folder is shared."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    if not os.path.isdir(runs):
        raise SafeevalError(
            f"The sweep's runs folder {runs} cannot be reached from {where}: run folders must lie on "
            "a filesystem every node mounts at the same path."
        )


def _trains(step: Step) -> bool:
    from .train.methods import make_method

    return step.train is not None and not make_method(step.train.method, step.train.method_options).post_hoc


def launch_training(cfg: TrainConfig, processes: int, shard: Path) -> None:
    """Train under accelerate's launcher, one process per GPU Ray gave the task, on this node; run_step then finds
    the run finished and scores it. An accelerate config of the user's (FSDP, DeepSpeed) is the launcher's to read;
    without one the processes form a plain data-parallel group (on a node without CUDA, over the CPU). GR-SAP's
    synthesis in those processes writes to the shard itself: a redirect lives in one process."""
    import subprocess

    import yaml
    from accelerate.commands.config import default_config_file

    out = Path(cfg.out)
    if (out / "training.json").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "score"}
    config = out / "launch.yaml"
    config.write_text(yaml.safe_dump(json.loads(json.dumps({**settings, "store": str(shard)}, default=str))))
    plain = [] if os.path.isfile(default_config_file) else ["--multi_gpu"]
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *plain,
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "safeeval",
        "train",
        "--config",
        str(config),
    ]
    log = out / "launcher.log"
    with open(log, "ab") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        try:
            code = proc.wait()
        finally:  # a cancelled task takes its launcher down with it
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    if code != 0:
        last = next((line for line in reversed(log.read_text(errors="replace").splitlines()) if line.strip()), "")
        raise SafeevalError(
            f"Training under accelerate's launcher ({processes} processes) exited with code {code}: "
            f"{last.strip()} (the whole log: {log})."
        )


def _free_port() -> int:
    """A port for the launcher's rendezvous: two multi-GPU steps on one node must not share one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the launcher's process: end when the task's worker ends, even when Ray kills it outright (Linux)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
