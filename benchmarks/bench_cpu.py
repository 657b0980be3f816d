"""What a training iteration costs on this CPU, each speed option alone and together; what the ``cpu`` profile uses.

    .venv/bin/python benchmarks/bench_cpu.py --out benchmarks/results/bench_cpu.json          # ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_cpu.py --tiny --out /tmp/bench_cpu_tiny.json            # test sizes, seconds

Rows are (model, option set). Models, at the study's sizes (batches of 128 labelled + 128 unlabelled,
1,000 labelled points of the 55,000-image pool):

- ``classifier`` / ``classifier_large``: one task-model SGD step (the small ~0.42M and large ~3M CNN);
- ``vae<W>_s<k>``: one iteration of VAAL's generative phase alone (``k`` VAE steps + 1 discriminator
  step, VAE conv width ``W``); a ``vaal`` cycle costs task iterations x ``classifier`` + generative
  iterations x this row;
- ``m2vaal<W>_s<k>``: one ``m2_vaal`` iteration (``k`` M2 steps with the adversarial term + 1
  discriminator step; M2 is the task model too).

Option sets: ``fp32`` (eager, every option off: the records of ``smoke``), ``bf16`` (autocast of forward +
loss), ``channels_last``, ``fused_optim``, ``bf16+cl`` and ``bf16+cl+fused`` (the ``cpu`` profile's candidates),
and ``compile`` (``torch.compile`` mode default of each step, with ``bf16+cl``; its cold start reported apart).

Timing: three fits of a fresh learner (each cycle builds one): ``W`` iterations (cold), ``W`` (warm), ``W + N``;
ms per iteration = (t3 - t2) / N (fixed costs out). Speed-up = fp32's ms / the row's ms, both measured in this
run. GFLOP/s: matmul and convolution FLOPs of one iteration (``torch.utils.flop_counter``, forward + backward)
/ its time; share of peak against this CPU's dense peak read from its flags (:func:`cpu_peak`: AMX-BF16,
AVX-512-BF16, AVX-512F or AVX2 FMA; per-core FLOP per cycle x cores x the clock /proc/cpuinfo reports).

Accuracy check (``--accuracy-iters``): the small classifier on 1,000 random labels, best validation accuracy
after K iterations of VAAL's SGD schedule, fp32 against bf16+cl, on each of ``--accuracy-seeds``.

Threads (``--threads-check MODELS``): each model as one 2-thread process against two 1-thread processes at once
(``alkit run --jobs 2`` on 2 cores), aggregate iterations per second, with ``--threads-options`` (default
``bf16+cl``), the settings alternated ``--threads-repeats`` times each; medians and every trial. Alone (no
``--models``) it times nothing else; with ``--append`` its models join the table's ``threads``:

    .venv/bin/python benchmarks/bench_cpu.py --threads-check m2large32k3_s1 --threads-options channels_last \
        --threads-repeats 3 --iters 24 --out benchmarks/results/bench_cpu_avx2.json --append
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alkit.config import from_dict  # noqa: E402
from alkit.cpu import cpu_flags, cpu_kind, cpu_model  # noqa: E402
from alkit.data import load_dataset  # noqa: E402
from alkit.learners import LEARNERS, TrainData  # noqa: E402

#: model -> (learner, parameters); generative rows run a 1-iteration task model (their own cost is the rest)
MODELS = {
    "classifier": ("classifier", {}),
    "classifier_large": ("classifier", {"size": "large"}),
    "vae64_s2": ("vaal", {"vae_width": 64, "vae_steps": 2}),
    "vae32_s2": ("vaal", {"vae_width": 32, "vae_steps": 2}),
    "vae32_s1": ("vaal", {"vae_width": 32, "vae_steps": 1}),
    "vae16_s1": ("vaal", {"vae_width": 16, "vae_steps": 1}),
    "m2vaal64_s2": ("m2_vaal", {"width": 64, "vae_steps": 2}),
    "m2vaal32_s1": ("m2_vaal", {"width": 32, "vae_steps": 1}),
    "m2vaal16_s1": ("m2_vaal", {"width": 16, "vae_steps": 1}),
    # M2's unlabelled bound over the top-k classes of q(y|x) instead of all 10 (losses.m2_unlabelled_loss)
    "m2vaal32k3_s1": ("m2_vaal", {"width": 32, "vae_steps": 1, "unlabelled_topk": 3}),
    "m2vaal32k2_s1": ("m2_vaal", {"width": 32, "vae_steps": 1, "unlabelled_topk": 2}),
    "m2vaal16k3_s1": ("m2_vaal", {"width": 16, "vae_steps": 1, "unlabelled_topk": 3}),
    # notebook 05's learner: M2 (no discriminator) with the ~3M-parameter classifier, width 32, top-3 bound
    "m2large32k3_s1": ("m2", {"width": 32, "vae_steps": 1, "unlabelled_topk": 3, "classifier_size": "large"}),
}
OPTION_SETS = {
    "fp32": {"compile": "off", "bf16": False, "channels_last": False, "fused_optim": False},
    "bf16": {"compile": "off", "bf16": True, "channels_last": False, "fused_optim": False},
    "channels_last": {"compile": "off", "bf16": False, "channels_last": True, "fused_optim": False},
    "fused_optim": {"compile": "off", "bf16": False, "channels_last": False, "fused_optim": True},
    "bf16+cl": {"compile": "off", "bf16": True, "channels_last": True, "fused_optim": False},
    "bf16+cl+fused": {"compile": "off", "bf16": True, "channels_last": True, "fused_optim": True},
    "compile": {"compile": "default", "bf16": True, "channels_last": True, "fused_optim": False},
}
#: (model, option sets) of a default run: every option on the small classifier and one VAE, the candidates elsewhere
PLAN = {
    "classifier": list(OPTION_SETS),
    "classifier_large": ["fp32", "bf16+cl"],
    "vae64_s2": ["fp32", "bf16+cl"],
    "vae32_s2": ["fp32", "bf16", "channels_last", "fused_optim", "bf16+cl", "bf16+cl+fused", "compile"],
    "vae32_s1": ["fp32", "bf16+cl"],
    "vae16_s1": ["fp32", "bf16+cl"],
    "m2vaal64_s2": ["fp32", "bf16+cl"],
    "m2vaal32_s1": ["fp32", "bf16+cl"],
    "m2vaal16_s1": ["fp32", "bf16+cl"],
    "m2vaal32k3_s1": ["bf16+cl"],
    "m2vaal32k2_s1": ["bf16+cl"],
    "m2vaal16k3_s1": ["bf16+cl"],
    "m2large32k3_s1": ["fp32", "bf16+cl"],
}
TINY = {"iterations": 2, "val_every": 1000, "latent_dim": 4, "disc_hidden": 16, "hidden": 8}


def cpu_peak() -> dict:
    """Dense peak of this CPU from its flags: FLOP per cycle per core for bf16 and fp32, x cores x clock.

    Per core and cycle (two FMA pipes assumed, as on Xeon and Zen 4 server parts): AMX-BF16 1,024 (bf16);
    AVX-512-BF16 (``vdpbf16ps``: 32 bf16 products per 512-bit lane set) 128 (bf16); AVX-512F 64 (fp32);
    AVX2 + FMA 32 (fp32). An upper bound: a core's clock under load may be lower than reported."""
    flags, mhz = cpu_flags(), None
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for line in text.splitlines():
        if line.startswith("cpu MHz"):
            mhz = float(line.split(":", 1)[1])
            break
    cores = torch.get_num_threads()
    fp32 = 64 if "avx512f" in flags else 32 if "fma" in flags else 8
    bf16, bf16_unit = ((1024, "amx_bf16") if "amx_bf16" in flags else (128, "avx512_bf16") if "avx512_bf16" in flags
                       else (fp32, "none (torch emulates bf16: slower than fp32, bench_cpu_avx2.json)"))
    ghz = (mhz or 2000.0) / 1000
    used = {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "fma", "avx2"}
    return {"model": cpu_model(), "kind": cpu_kind(flags), "flags_used": sorted(flags & used),
            "bf16_unit": bf16_unit, "ghz_reported": ghz, "cores": cores,
            "peak_fp32_gflops": fp32 * cores * ghz, "peak_bf16_gflops": bf16 * cores * ghz}


def make_data(tiny: bool, labelled: int = 1000) -> TrainData:
    d = load_dataset(pool_size=300, val_size=100, test_size=10) if tiny else load_dataset()
    labelled = min(labelled, 40) if tiny else labelled
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(d.x_pool)))
    lab, unl = perm[:labelled], perm[labelled:]
    return TrainData(x_labelled=d.x_pool[lab], y_labelled=d.y_pool[lab], x_unlabelled=d.x_pool[unl],
                     x_val=d.x_val, y_val=d.y_val, num_classes=10)


def build(model: str, options: dict, iterations: int, tiny: bool):
    """A fresh learner; for generative rows ``iterations`` are the generative phase's (task model: 1 iteration)."""
    learner, extra = MODELS[model]
    cls = LEARNERS[learner]
    params = {"val_every": 1000, **extra, **options}
    if tiny:
        params.update({k: v for k, v in TINY.items() if k in {f for f in cls.Params.__dataclass_fields__}})
        params.update({"vae_width": 4} if "vae_width" in params else {"width": 4} if "width" in params else {})
    if learner == "classifier":
        params["iterations"] = iterations
    else:
        params.update({"iterations": 1, "gen_iterations": iterations})
    return cls(from_dict(cls.Params, params, where=model), 10, torch.device("cpu"))


def timed_fit(model, options, iterations, data, tiny, seed=0) -> tuple[float, dict]:
    learner = build(model, options, iterations, tiny)
    t = time.perf_counter()
    metrics = learner.fit(data, seed=seed)
    return time.perf_counter() - t, metrics


def measure(model, options, data, tiny, warmup, iters) -> dict:
    t1, _ = timed_fit(model, options, warmup, data, tiny)
    t2, _ = timed_fit(model, options, warmup, data, tiny)
    t3, _ = timed_fit(model, options, warmup + iters, data, tiny)
    per = max((t3 - t2) / iters, 1e-9)
    return {"ms_per_iteration": 1000 * per, "cold_extra_s": t1 - t2, "fixed_s": t2 - warmup * per,
            "iterations_timed": iters}


def flops_per_iteration(model, data, tiny) -> float:
    """Matmul + convolution FLOPs (forward + backward) of one iteration: a fit of 3 minus a fit of 2, fp32."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    for n in (2, 3):
        with FlopCounterMode(display=False) as fc:
            timed_fit(model, OPTION_SETS["fp32"], n, data, tiny)
        counts.append(fc.get_total_flops())
    return float(counts[1] - counts[0])


def accuracy_check(data, iters: int, seeds: list[int], tiny: bool) -> list[dict]:
    rows = []
    for seed in seeds:
        row = {"seed": seed, "iterations": iters}
        for name in ("fp32", "bf16+cl"):
            learner = build("classifier", OPTION_SETS[name], iters, tiny)
            row[name] = learner.fit(data, seed=seed)["val_acc"]
        rows.append(row)
    return rows


def threads_check(models: list[str], iters_of, tiny: bool, options: str = "bf16+cl", repeats: int = 1) -> dict:
    """Aggregate iterations/s of one 2-thread process against two 1-thread processes at once, each model's runs
    alternated (one, pair, pair, one, ...) ``repeats`` times each; the ratio of the medians, and every trial."""
    out = {}
    for model in models:
        cmd = [sys.executable, __file__, "--one", model, "--threads-options", options, "--iters", str(iters_of(model))]
        cmd += ["--tiny"] if tiny else []
        env1 = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_THREADS": "1"}
        env2 = {**os.environ, "OMP_NUM_THREADS": "2", "BENCH_THREADS": "2"}
        ones, pairs = [], []
        for k in range(2 * repeats):
            if (k % 4) in (0, 3):  # one, pair, pair, one: neither setting always first
                one = json.loads(subprocess.run(cmd, env=env2, capture_output=True, text=True, check=True).stdout)
                ones.append(1000 / one["ms_per_iteration"])
            else:
                procs = [subprocess.Popen(cmd, env=env1, stdout=subprocess.PIPE, text=True) for _ in range(2)]
                pair = [json.loads(p.communicate()[0]) for p in procs]
                pairs.append(sum(1000 / r["ms_per_iteration"] for r in pair))
        one_med, pair_med = float(np.median(ones)), float(np.median(pairs))
        out[model] = {"options": options, "iterations": iters_of(model), "one_2thread_it_per_s": one_med,
                      "two_1thread_it_per_s": pair_med, "ratio_two_1thread_over_one_2thread": pair_med / one_med,
                      "trials_one_2thread_it_per_s": ones, "trials_two_1thread_it_per_s": pairs}
        print(f"threads {model:17s} {options:14s} 1x2 {one_med:6.2f} it/s  2x1 {pair_med:6.2f} it/s  "
              f"x{pair_med / one_med:.2f}  (trials {[round(x, 2) for x in ones]} / {[round(x, 2) for x in pairs]})",
              flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="test sizes: 300-image pool, narrow models, 2 iterations")
    ap.add_argument("--models", default=None,
                    help=f"of {', '.join(MODELS)} (default: all, or none with --threads-check)")
    ap.add_argument("--options", default=None,
                    help=f"option sets to time for every model, of {', '.join(OPTION_SETS)} (default: each model's plan); "
                         "fp32 is always timed first, as the baseline of the speed-ups")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations (default: 60 classifier, 16 others)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--accuracy-iters", type=int, default=0)
    ap.add_argument("--accuracy-seeds", default="0,1")
    ap.add_argument("--threads-check", default="", help="models to run as 1x2 threads vs 2x1 threads")
    ap.add_argument("--threads-options", default="bf16+cl", help="the option set of --threads-check")
    ap.add_argument("--threads-repeats", type=int, default=1, help="trials of each setting in --threads-check")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a threads_check child: one row, JSON out
    ap.add_argument("--out", default=None)
    ap.add_argument("--append", action="store_true", help="merge these rows into --out (same model and options replaced)")
    args = ap.parse_args(argv)
    if args.models is None:
        args.models = "" if args.threads_check else ",".join(PLAN)
    for flag, values, allowed, what in (
            ("--options", args.options.split(",") if args.options else [], OPTION_SETS, "an option set"),
            ("--threads-options", [args.threads_options], OPTION_SETS, "an option set"),
            ("--models", args.models.split(",") if args.models else [], MODELS, "a model"),
            ("--threads-check", args.threads_check.split(",") if args.threads_check else [], MODELS, "a model")):
        for name in values:
            if name not in allowed:
                print(f"error: {flag}: {name!r} is not {what}; allowed: {', '.join(allowed)}", file=sys.stderr)
                sys.exit(2)
    if args.threads_repeats < 1:
        print(f"error: --threads-repeats: {args.threads_repeats}; allowed: an integer >= 1", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    data = make_data(args.tiny)
    warmup = args.warmup or (1 if args.tiny else 3)

    def iters_of(model):
        return args.iters or (2 if args.tiny else 60 if model.startswith("classifier") else 16)

    if args.one:
        print(json.dumps(measure(args.one, OPTION_SETS[args.threads_options], data, args.tiny, warmup, iters_of(args.one))))
        return
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), **cpu_peak()},
              "tiny": args.tiny, "rows": []}
    peak = result["machine"]
    for model in args.models.split(",") if args.models else []:
        flops = flops_per_iteration(model, data, args.tiny)
        base = None
        plan = PLAN.get(model, ["fp32", "bf16+cl"])
        if args.options:
            plan = ["fp32", *[o for o in args.options.split(",") if o != "fp32"]]
        for name in plan:
            row = {"model": model, "options": name, **measure(model, OPTION_SETS[name], data, args.tiny, warmup,
                                                              iters_of(model))}
            base = base or row["ms_per_iteration"]
            gflops = flops / row["ms_per_iteration"] / 1e6
            bf16 = OPTION_SETS[name]["bf16"]
            row.update(speedup_vs_fp32=base / row["ms_per_iteration"], gflop_per_iteration=flops / 1e9, gflops=gflops,
                       share_of_peak=gflops / (peak["peak_bf16_gflops"] if bf16 else peak["peak_fp32_gflops"]))
            result["rows"].append(row)
            print(f"{model:17s} {name:14s} {row['ms_per_iteration']:9.1f} ms  x{row['speedup_vs_fp32']:.2f}  "
                  f"{gflops:7.1f} GFLOP/s  {100 * row['share_of_peak']:5.1f} % of peak  cold +{row['cold_extra_s']:.1f} s",
                  flush=True)
    if args.accuracy_iters:
        result["accuracy"] = accuracy_check(data, args.accuracy_iters, [int(s) for s in args.accuracy_seeds.split(",")],
                                            args.tiny)
        print("accuracy", json.dumps(result["accuracy"]), flush=True)
    if args.threads_check:
        result["threads"] = threads_check(args.threads_check.split(","), iters_of, args.tiny, args.threads_options,
                                          args.threads_repeats)
    if args.out:
        out = Path(args.out)
        if args.append and out.exists():  # earlier rows of this machine kept, these replace their namesakes
            old = json.loads(out.read_text())
            new_keys = {(r["model"], r["options"]) for r in result["rows"]}
            old["rows"] = [r for r in old["rows"] if (r["model"], r["options"]) not in new_keys] + result["rows"]
            if "threads" in result:  # a threads check's models replace their namesakes too
                old["threads"] = {**old.get("threads", {}), **result["threads"]}
            old.setdefault("appended", []).append({"models": args.models or args.threads_check,
                                                   "machine": result["machine"]})
            result = old
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
