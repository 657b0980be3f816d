"""Runs on Ray: ``alkit run ... --executor ray``, each (arm, seed) run one Ray task.

For sweeps that outgrow one machine. Ray does the placing and queueing; alkit only turns each
run into a task with the resources it asks for (``num_gpus`` = ``--gpus-per-run``, a fraction of a
GPU, or ``num_cpus`` = ``--cpus-per-run`` for CPU runs) and hands them all to Ray at once.
:func:`alkit.jobs.run_tasks` drives it exactly as it drives local workers: the same run folders
(written by :func:`alkit.experiment.run_one` in the task), the same summary, the same resume
(a finished run is loaded, an unfinished one goes on after its last cycle), the same shared runs
(copied when the first finishes), and ``--time-limit`` passed to every run (a run starts no cycle
that will not end in time; runs Ray starts late start none). Progress comes back per cycle through
a Ray queue.

``address``: ``None`` starts a local Ray for the command (all CPUs and GPUs of this machine, no
dashboard, a small object store) and stops it after; ``"auto"`` joins the cluster started with
``ray start --head`` on this machine; ``ray://host:10001`` a remote one. On a cluster, every node
needs alkit and the data, and ``--results-root`` must be a folder every node sees (a shared
filesystem): the tasks write there.

Ray is optional (``pip install 'alkit[cluster]'``): nothing here imports it before a pool is made.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .config import ConfigError
from .plugins import import_module
from .workers import run_payload

#: object store of a Ray started for one command: tasks pass only small payloads and messages
LOCAL_OBJECT_STORE_BYTES = 100 * 1024**2


@dataclass
class RayOptions:
    """What ``--ray-address``, ``--gpus-per-run`` and ``--cpus-per-run`` ask for."""

    address: str | None = None  # None: a local Ray for this command; "auto": the running cluster
    gpus_per_run: float = 0.0  # a fraction of a GPU per run (0.25: four runs share a GPU); 0: CPU runs
    cpus_per_run: float = 1.0

    def __post_init__(self):
        if not self.gpus_per_run >= 0:
            raise ConfigError(f"--gpus-per-run: {self.gpus_per_run}; allowed: a number >= 0 (0.25: four runs per GPU)")
        if not self.cpus_per_run > 0:
            raise ConfigError(f"--cpus-per-run: {self.cpus_per_run}; allowed: a number > 0")


def import_ray():
    """The ``ray`` module, or one :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray: Ray is not installed; allowed: install it with "
                          "pip install 'alkit[cluster]' (or use --executor local)") from None
    return ray


# ---------------------------------------------------------------------------------------------
# In the Ray worker
# ---------------------------------------------------------------------------------------------

_CACHE: dict = {}  # loaded data, shared by the runs a Ray worker process executes one after another
_IMPORTED: set[str] = set()


def _ray_run(payload: dict, device: str | None, threads: int | None, imports: list[str], messages) -> None:
    """One run (or fused group) in a Ray worker: the local workers' :func:`alkit.workers.run_payload`, reporting to ``messages``."""
    if threads:
        torch.set_num_threads(threads)
    for module in imports:
        if module not in _IMPORTED:
            import_module(module)
            _IMPORTED.add(module)
    run_payload(payload, device, _CACHE, lambda kind, tid, value: messages.put((kind, tid, value)))


# ---------------------------------------------------------------------------------------------
# In the driver: the pool interface of alkit.workers (submit / get / dead / close)
# ---------------------------------------------------------------------------------------------


class RayPool:
    """Every run handed to it becomes a Ray task at once; Ray queues those that do not fit yet."""

    def __init__(self, slots: int, device: str | None, threads: int | None, imports: list[str], options: RayOptions):
        ray = self.ray = import_ray()
        from ray.util.queue import Queue

        self.owns = not ray.is_initialized()
        if self.owns and options.address is None and options.gpus_per_run:
            # a local Ray has this machine's GPUs: say so before starting it
            if not torch.cuda.is_available():
                raise ConfigError(f"--gpus-per-run: {options.gpus_per_run}, but this machine has no CUDA GPU for a "
                                  f"local Ray (torch {torch.__version__}); allowed: 0 (CPU runs), or --ray-address "
                                  "of a cluster with GPUs")
        if self.owns:
            if options.address is None:
                ray.init(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                         configure_logging=False, log_to_driver=True)
            else:
                try:
                    ray.init(address=options.address, configure_logging=False, log_to_driver=True)
                except ConnectionError as exc:
                    raise ConfigError(f"--ray-address: {options.address!r}: no Ray cluster there ({exc}); allowed: "
                                      "auto (after `ray start --head`), ray://host:port, or none for a local Ray") from None
        try:
            have = ray.cluster_resources()
            if options.gpus_per_run > have.get("GPU", 0):
                raise ConfigError(f"--gpus-per-run: {options.gpus_per_run}, but the Ray cluster has "
                                  f"{have.get('GPU', 0):g} GPU(s); allowed: 0 (CPU runs) or a cluster with GPUs")
            if options.cpus_per_run > have.get("CPU", 0):
                raise ConfigError(f"--cpus-per-run: {options.cpus_per_run}, but the Ray cluster has "
                                  f"{have.get('CPU', 0):g} CPU(s); allowed: at most that")
            fit = [have.get("CPU", 0) / options.cpus_per_run]
            if options.gpus_per_run:
                fit.append(have.get("GPU", 0) / options.gpus_per_run)
            self.concurrency = max(1, min(slots, int(min(fit))))
            # the message queue is an actor: on the driver's node, so that losing another node loses only its runs
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
            self.messages = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        except BaseException:
            self.close()
            raise
        # the GPU Ray gives a task is its "cuda" (Ray sets CUDA_VISIBLE_DEVICES); cuda:N of a config means nothing there
        self.device = device or ("cuda" if options.gpus_per_run else None)
        self.threads = threads or max(1, int(options.cpus_per_run))
        self.imports = [str(Path(m).resolve()) if m.endswith(".py") else m for m in imports]
        self.remote = ray.remote(_ray_run).options(num_cpus=options.cpus_per_run, num_gpus=options.gpus_per_run)
        what = f"{options.gpus_per_run:g} GPU" if options.gpus_per_run else f"{options.cpus_per_run:g} CPU"
        self.devices = [f"Ray ({what} per run)"] * slots
        self.inbox: list[tuple] = [("ready", i, None) for i in range(slots)]
        self.refs: dict = {}  # Ray task -> its run ids (one, or a fused group's)

    def submit(self, worker: int, payload: dict) -> None:
        def absolute(exp):  # a relative results root would be relative to each Ray worker's folder
            return replace(exp, results_root=str(Path(exp.results_root).resolve()))

        if "members" in payload:  # a fused group (alkit.jobs): one Ray task trains all its runs
            payload = dict(payload, members=[(absolute(e), arm, seed) for e, arm, seed in payload["members"]])
        else:
            payload = dict(payload, exp=absolute(payload["exp"]))
        ref = self.remote.remote(payload, self.device, self.threads, self.imports, self.messages)
        self.refs[ref] = payload.get("ids", [payload["id"]])

    def get(self, timeout: float):
        from ray.util.queue import Empty

        if self.inbox:
            return self.inbox.pop(0)
        try:
            return self.messages.get(timeout=timeout)
        except Empty:
            pass
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0) if self.refs else ([], [])
        for ref in ready:  # ended: its "done" / "failed" is in the queue, unless Ray lost the worker
            tids = self.refs.pop(ref)
            try:
                self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001  (reported as the runs' failure; other runs go on)
                why = f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                self.inbox += [("failed", tid, why) for tid in tids[1:]]
                return ("failed", tids[0], why)
        return None

    def dead(self) -> list[int]:
        return []

    def close(self) -> None:
        if not self.ray.is_initialized():
            return
        refs = list(getattr(self, "refs", {}))
        _, unfinished = self.ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
        for ref in unfinished:  # interrupted (Ctrl-C): stop its runs; their finished cycles are kept
            self.ray.cancel(ref, force=True)
        if self.owns:
            self.ray.shutdown()
