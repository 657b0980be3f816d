"""Active learning on your own images with a person as the oracle: propose a batch, take the answers, repeat.

A :class:`LabelSession` is one run of the loop in which the labels of the proposed images come from
whoever answers (you in notebook 06's grid, or :func:`true_labels` for a simulated oracle). It trains and
selects with exactly the loop's code (:func:`alkit.loop.fit_and_evaluate`, :func:`alkit.loop.propose`),
and keeps everything in one folder (its paths: :mod:`alkit.results`), each file written atomically:

================  ==================================================================================
``config.json``   the run config, git commit and machine, as every run
``labels.json``   every answer so far: ``{"index", "label" (None = skipped), "round"}``, plus the initial set
``draft.json``    answers of the current round not yet submitted, saved at every click
``proposal.json`` the current round's batch, written after training: reopening shows it without retraining
``records.jsonl`` one record per round (accuracies, class counts, the proposed indices, timings)
``latent/``       the learner's latent codes per round, for the UMAP view
================  ==================================================================================

Closing the notebook loses no label (clicks are drafts on disk; a round's answers are saved before the
next training starts) and reopening resumes at the same batch. The initial labelled set is every pool
image that came with a label when the dataset has unlabelled images (a folder with ``unlabelled/``),
else ``initial`` of the config drawn as the loop draws it.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from . import results
from .config import ConfigError, to_dict
from .loop import (RunConfig, check_resumable, fit_and_evaluate, initial_set_seed, propose, resolve_device, save_latent,
                   validate, write_run_config)
from .own_data import load_data
from .pool import initial_labelled

class LabelSession:
    """One active-learning session over ``cfg``'s data in ``folder``; resumes whatever the folder holds.

    ``cfg.cycles`` is the number of rounds to propose at most; ``cfg.budget`` the batch size. ``data`` may
    pass a loaded :class:`~alkit.data.Data` (its ``y_pool`` may hold ``-1`` for images nobody labelled).
    """

    def __init__(self, cfg: RunConfig, folder: str | Path, data=None, progress: bool = False):
        validate(cfg)
        self.cfg, self.folder, self.progress = cfg, Path(folder), progress
        self.device = resolve_device(cfg.device)
        cfg_path = results.config_path(self.folder)
        if cfg_path.exists():
            check_resumable(results.read_json(cfg_path)["config"], to_dict(cfg), self.folder)
        self.data = (data if data is not None else load_data(cfg, self.device)).to(self.device)
        truth = self.data.y_pool.cpu().numpy()
        self.class_names = tuple(self.data.class_names)
        if (truth < 0).any():  # images without labels: the labelled ones are the start
            start = np.flatnonzero(truth >= 0)
        else:
            start = initial_labelled(truth, cfg.initial, initial_set_seed(cfg), self.data.num_classes)
        if len(start) == 0:
            raise ConfigError(f"dataset: {cfg.dataset!r}: no labelled image to start from")
        self.initial = {int(i): int(truth[i]) for i in start}
        if not cfg_path.exists():
            write_run_config(cfg_path, cfg, self.device, {"oracle_session": True})
        labels = results.labels_path(self.folder)
        saved = results.read_json(labels) if labels.exists() else {}
        self.answers: list[dict] = list(saved.get("answers", []))

    # ---- state -------------------------------------------------------------------------------------
    @property
    def round(self) -> int:
        """Rounds answered so far (the next proposal belongs to this round)."""
        return 1 + max((a["round"] for a in self.answers), default=-1)

    def labels(self) -> dict[int, int]:
        """Pool index -> label of every labelled image: the initial set, then the answers (later answers win)."""
        out = dict(self.initial)
        for a in self.answers:
            if a["label"] is not None:
                out[int(a["index"])] = int(a["label"])
        return out

    def skipped(self) -> set[int]:
        answered = self.labels()
        return {int(a["index"]) for a in self.answers if a["label"] is None and int(a["index"]) not in answered}

    def records(self) -> list[dict]:
        return results.read_records(results.records_path(self.folder))

    def finished(self) -> bool:
        return self.round >= self.cfg.cycles or not len(self._unlabelled())

    def _unlabelled(self) -> np.ndarray:
        taken = np.fromiter(set(self.labels()) | self.skipped(), dtype=np.int64)
        return np.setdiff1d(np.arange(len(self.data.y_pool), dtype=np.int64), taken)

    def _data_with_answers(self):
        y = torch.full_like(self.data.y_pool, -1)
        lab = self.labels()
        idx = torch.as_tensor(sorted(lab), device=y.device)
        y[idx] = torch.as_tensor([lab[int(i)] for i in idx.tolist()], device=y.device)
        return dataclasses.replace(self.data, y_pool=y)

    # ---- one round -------------------------------------------------------------------------------
    def proposal(self) -> dict:
        """The current round's batch: ``{"round", "indices", "guess", "confidence"}`` (the model's
        prediction per image). Trains and selects only when the folder holds no proposal for this round."""
        path = results.proposal_path(self.folder)
        if path.exists():
            saved = results.read_json(path)
            if saved["round"] == self.round:
                return saved
        if self.finished():
            raise ConfigError(f"session {self.folder} is finished: {self.round} rounds of at most "
                              f"cycles: {self.cfg.cycles}, {len(self._unlabelled())} images left")
        data = self._data_with_answers()
        lab = np.array(sorted(self.labels()), dtype=np.int64)
        unl = self._unlabelled()
        rec, learner, train, seconds = fit_and_evaluate(self.cfg, data, lab, unl, self.round, self.device,
                                                        progress=self.progress)
        cfg = dataclasses.replace(self.cfg, budget=min(self.cfg.budget, len(unl)))
        t = time.perf_counter()
        selected, _ = propose(cfg, data, learner, train, lab, unl, self.round, self.device)
        seconds["select"] = time.perf_counter() - t
        proba = learner.predict_proba(data.x_pool[torch.as_tensor(selected, device=self.device)]).float().cpu()
        if self.cfg.latent_sample:  # coloured by the dataset's own labels where it has them (-1: unknown)
            save_latent(self.cfg, self.data, learner, self.round, lab, selected, self.folder)
        rec.update(selected=selected.tolist(), seconds=seconds, skipped=len(self.skipped()))
        history = [r for r in self.records() if r["cycle"] != self.round]
        results.write_records(results.records_path(self.folder), history + [rec])
        out = {"round": self.round, "indices": selected.tolist(), "guess": proba.argmax(1).tolist(),
               "confidence": [round(float(p), 4) for p in proba.max(1).values]}
        results.write_json(path, out)
        return out

    def draft(self) -> dict[int, int | None]:
        """Answers clicked in the current round but not submitted (from ``draft.json``)."""
        path = results.draft_path(self.folder)
        if not path.exists():
            return {}
        saved = results.read_json(path)
        return {int(k): v for k, v in saved["answers"].items()} if saved.get("round") == self.round else {}

    def save_draft(self, answers: Mapping[int, int | None]) -> None:
        """Keep the current round's answers so far (called at every click): closing loses nothing."""
        results.write_json(results.draft_path(self.folder), {"round": self.round, "answers": self._checked(answers)})

    def answer(self, answers: Mapping[int, int | None]) -> int:
        """Submit this round: ``{pool index: class (0 .. K-1), or None to skip}`` for images of the proposal.

        Images left out stay unlabelled (they may be proposed again); skipped ones are not proposed again.
        Saved atomically to ``labels.json`` before anything else happens; returns the number of labels added.
        """
        checked = self._checked(answers)
        if not checked:
            raise ConfigError("nothing to submit: label or skip at least one image of the batch")
        r = self.round
        self.answers += [{"index": int(i), "label": v, "round": r} for i, v in sorted(checked.items(), key=lambda kv: int(kv[0]))]
        results.write_json(results.labels_path(self.folder), {"initial": {str(k): v for k, v in sorted(self.initial.items())},
                                                  "class_names": list(self.class_names), "answers": self.answers})
        recs = self.records()  # the batch as the oracle labelled it, on the record of the round that proposed it
        for rec in recs:
            if rec["cycle"] == r:
                given = [v for v in checked.values() if v is not None]
                rec["selected_class_counts"] = np.bincount(given, minlength=len(self.class_names)).tolist()
                rec["answered"], rec["skipped_in_batch"] = len(given), len(checked) - len(given)
        results.write_records(results.records_path(self.folder), recs)
        for path in (results.draft_path(self.folder), results.proposal_path(self.folder)):
            path.unlink(missing_ok=True)
        return sum(v is not None for v in checked.values())

    def _checked(self, answers: Mapping[int, int | None]) -> dict[str, int | None]:
        batch = set(self.proposal()["indices"])
        out = {}
        for i, v in answers.items():
            if int(i) not in batch:
                raise ConfigError(f"answer for pool index {i}: not in this round's batch ({len(batch)} images)")
            if v is not None and not (isinstance(v, (int, np.integer)) and 0 <= v < len(self.class_names)):
                raise ConfigError(f"answer for pool index {i}: {v!r} is not a class 0 .. {len(self.class_names) - 1} "
                                  "or None (skip)")
            out[str(int(i))] = None if v is None else int(v)
        return out

    # ---- without a person ----------------------------------------------------------------------
    def run(self, oracle: Callable[[list[int]], Mapping[int, int | None]], rounds: int | None = None) -> list[dict]:
        """Answer ``rounds`` proposals (default: until finished) with ``oracle(indices) -> answers``; then
        train and evaluate once more on everything labelled. Returns the records."""
        done = 0
        while not self.finished() and (rounds is None or done < rounds):
            self.answer(oracle(self.proposal()["indices"]))
            done += 1
        self.evaluate()
        return self.records()

    def evaluate(self) -> dict:
        """Train and evaluate on everything labelled now, without proposing (the record of the final round)."""
        existing = [r for r in self.records() if r["cycle"] == self.round]
        if existing:
            return existing[0]
        if not self.finished():  # trains on everything labelled, evaluates, and proposes the next batch
            self.proposal()
            return self.records()[-1]
        data = self._data_with_answers()
        lab = np.array(sorted(self.labels()), dtype=np.int64)
        rec, _, _, seconds = fit_and_evaluate(self.cfg, data, lab, self._unlabelled(), self.round, self.device,
                                              progress=self.progress)
        rec.update(selected=None, seconds=seconds, skipped=len(self.skipped()))
        results.write_records(results.records_path(self.folder), self.records() + [rec])
        return rec


def true_labels(data) -> Callable[[list[int]], dict[int, int]]:
    """A simulated oracle: the dataset's own labels (every pool image must have one)."""
    y = data.y_pool.cpu().numpy()

    def oracle(indices: list[int]) -> dict[int, int]:
        missing = [i for i in indices if y[i] < 0]
        if missing:
            raise ConfigError(f"oracle: simulated: {len(missing)} proposed images have no label in the dataset; "
                              "use oracle: human")
        return {int(i): int(y[i]) for i in indices}

    return oracle



def open_session(exp, arm: str | None = None, seed: int | None = None, progress: bool = False) -> LabelSession:
    """The oracle session of experiment ``exp`` (notebook 06): its first arm and seed unless named, in
    :meth:`~alkit.experiment.Experiment.session_dir`, resumed when that folder holds one."""
    arm = next(iter(exp.arms)) if arm is None else arm
    seed = exp.seeds[0] if seed is None else seed
    return LabelSession(exp.config(arm, seed), exp.session_dir(arm, seed), progress=progress)


def describe(session: LabelSession) -> str:
    """The session's data and state in two sentences, for notebook 06."""
    d = session.data
    names = ", ".join(session.class_names[:12]) + (" …" if len(session.class_names) > 12 else "")
    c = d.x_pool.shape[1]
    unknown = int((d.y_pool < 0).sum())
    test = ("the validation images also test (no separate test set)" if "(test = validation)" in d.name
            else f"test {len(d.y_test):,}")
    return (f"Dataset `{session.cfg.dataset}`: pool {len(d.y_pool):,} images ({'grey' if c == 1 else 'colour'}, "
            f"resized to 28 × 28){f', {unknown:,} of them without a label' if unknown else ''}; validation "
            f"{len(d.y_val):,}; {test}; {d.num_classes} classes ({names}). Start: {len(session.initial):,} labelled "
            f"images; now round {session.round} of {session.cfg.cycles}, {len(session.labels()):,} labelled, "
            f"{len(session.skipped()):,} skipped.")


def summary(session: LabelSession) -> list[str]:
    """What the session shows so far, as Markdown bullet lines (accuracy first and last, answers, skips)."""
    recs = session.records()
    if not recs:
        return ["- No round trained yet."]
    first, last = recs[0], recs[-1]
    lines = [f"- Validation accuracy {100 * first['val_acc']:.1f} % with {first['n_labelled']:,} labels (round 0) → "
             f"{100 * last['val_acc']:.1f} % with {last['n_labelled']:,} (round {last['cycle']}); test accuracy "
             f"{100 * first['test_acc']:.1f} % → {100 * last['test_acc']:.1f} %. One session, one seed: a trend, not an "
             "estimate of its spread."]
    answered = sum(r.get("answered", 0) for r in recs)
    skipped = sum(r.get("skipped_in_batch", 0) for r in recs)
    lines.append(f"- The oracle answered {answered:,} proposed images and skipped {skipped:,} over {session.round} rounds.")
    return lines
