"""One training engine for every learner: a learner declares phases (:mod:`.phase`), the engine runs
them for one run (:mod:`.single`) or for K runs stacked into one model (:mod:`.fused`; its whole iteration as
one CUDA graph: :mod:`.graph`), with the speed options (:mod:`.speed`) and the cycle's time box (:mod:`.timebox`)."""
from .drive import drive, drive_fused
from .fused import run_fused, signature
from .phase import LrDrops, Optim, Phase, PhaseResult, Step, Validation, make_optimizer
from .single import run_phase

__all__ = ["drive", "drive_fused", "run_fused", "signature", "run_phase", "LrDrops", "Optim", "Phase",
           "PhaseResult", "Step", "Validation", "make_optimizer"]
