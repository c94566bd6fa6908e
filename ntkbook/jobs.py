"""The book's work as independent jobs: what ``ntkbook plan`` lists and ``ntkbook grid`` runs.

Four kinds, each computing (or finding in the cache) everything the book needs of it:

- ``stage1`` (seed, mode): stage-1 training; clean and PGD accuracy at the spawn epochs and
  the end; section 5 transfers of the stage-1 networks; worst case of its Table 2 and
  audited networks;
- ``kernels`` (seed, mode): the section 3 kernels of every checkpoint; the section 8
  eigenvector images (first seed); at eps = 8/255, the adversarial kernels at eps = 4/255
  that section 9 compares with;
- ``stage2`` (one network): stage-2 training and evaluation; its section 4-5 numbers (first
  order ratio, transferability), its Table 1 kernel, its worst case;
- ``audit`` (seed): the robustness audit of the seed's headline networks.

``kernels`` and ``stage2`` jobs need their stage-1 job; ``audit`` needs its seed's stage-1
jobs and the stage-2 jobs of the networks it attacks, which the plan puts first, so a seed's
audit runs beside the next seed's stage 2 (:func:`dependencies`). A companion setting's plan
has only what the pages it shows need (:func:`ntkbook.settings.shows`). A finished job
leaves a marker entry in the store, keyed by the job, every profile value and the data
(:func:`is_done`), so a job is done for exactly the settings it ran with; a failed one
leaves the error and its log.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

from ntkbook import (
    experiment,
    kernel_study,
    radius,
    robustness,
    settings,
    sweeps,
    tables,
)
from ntkbook.config import Profile
from ntkbook.experiment import NetworkId
from ntkbook.store import Spec, Store

COMMANDS = ("stage1", "kernels", "stage2", "audit")


@dataclasses.dataclass(frozen=True)
class Job:
    """One independent job: ``command`` with its seed, and its mode or network."""

    command: str
    seed: int
    mode: str | None = None
    network: NetworkId | None = None

    @property
    def label(self) -> str:
        if self.command == "stage2":
            n = self.network
            flags = "".join(f" {k}={v:g}" if k == "lr" else f" {k}"
                            for k, v in n.options().items())
            return f"stage2 seed {n.seed} {n.mode} t={n.epoch:g} {n.dynamics}{flags}"
        if self.command == "audit":
            return f"audit seed {self.seed}"
        return f"{self.command} seed {self.seed} {self.mode}"

    def argv(self, profile: str) -> list[str]:
        """The ``ntkbook`` command line that runs this job."""
        args = [self.command, "--profile", profile, "--seed", str(self.seed)]
        if self.command in ("stage1", "kernels"):
            return args + ["--mode", self.mode]
        if self.command == "audit":
            return args
        n = self.network
        args += ["--mode", n.mode, "--spawn-epoch", f"{n.epoch:g}", "--dynamics", n.dynamics]
        if n.lr is not None:
            args += ["--lr", f"{n.lr:g}"]
        return args + (["--update-bn"] if n.update_bn else []) + (
            ["--adversarial"] if n.adversarial else [])


def _normalised(cfg: Profile, nid: NetworkId) -> NetworkId:
    """The same network with a default learning rate written as None (one job per run)."""
    return dataclasses.replace(nid, lr=None) if nid.lr == cfg.stage2_lr else nid


def section4_ids(cfg: Profile, seed: int) -> Iterator[NetworkId]:
    """Sections 4-5: linearized and centered stage 2 from every spawn epoch."""
    for mode in sweeps.modes(cfg):
        for t in cfg.spawn_epochs:
            for dynamics in sweeps.STAGE2_DYNAMICS:
                yield NetworkId(seed, mode, float(t), dynamics)


def stage2_ids(cfg: Profile, seed: int) -> list[NetworkId]:
    """Every stage-2 network of the book for ``seed``, each once."""
    ids = list(section4_ids(cfg, seed)) + tables.table_networks(cfg, seed)
    if robustness.audit_applies(cfg):
        ids += [nid for nid, _ in robustness.audited_networks(cfg, seed).values()]
    return list(dict.fromkeys(_normalised(cfg, nid) for nid in ids if nid.stage == 2))


def transfers(cfg: Profile, mode: str) -> bool:
    """Whether the plan makes section 5's transfers from ``mode``'s networks."""
    return mode in sweeps.modes(cfg) and settings.shows(cfg, "transferability")


def plan(cfg: Profile) -> list[Job]:
    """Every job of the book, in an order that respects :func:`dependencies`."""
    jobs = [Job(command, seed, mode) for command in ("stage1", "kernels")
            for seed in cfg.seeds for mode in cfg.modes]
    audited = audits(cfg)
    for seed in cfg.seeds:  # each seed's audit as soon as the networks it attacks exist
        needed = set(audit_needs(cfg, seed)) if audited else set()
        ids = sorted(stage2_ids(cfg, seed), key=lambda nid: nid not in needed)
        jobs += [Job("stage2", seed, nid.mode, nid) for nid in ids]
        jobs += [Job("audit", seed)] if audited else []
    return jobs


def audit_needs(cfg: Profile, seed: int) -> list[NetworkId]:
    """The stage-2 networks a seed's audit attacks or transfers from (normalised)."""
    ids = [nid for pair in robustness.audited_networks(cfg, seed).values() for nid in pair]
    ids += robustness.pgd_controls(cfg, seed)
    return list(dict.fromkeys(_normalised(cfg, nid) for nid in ids if nid.stage == 2))


def audits(cfg: Profile) -> bool:
    """Whether the profile's plan has the robustness audit's jobs."""
    return robustness.audit_applies(cfg) and settings.shows(cfg, "robustness_audit")


def dependencies(cfg: Profile, job: Job, jobs: list[Job]) -> list[Job]:
    """The jobs of ``jobs`` that must finish before ``job`` starts."""
    if job.command == "stage1":
        return []
    if job.command == "audit":
        needed = set(audit_needs(cfg, job.seed))
        return [j for j in jobs if j.seed == job.seed and (
            j.command == "stage1" or j.command == "stage2" and j.network in needed)]
    return [Job("stage1", job.seed, job.mode)]


# --- markers ------------------------------------------------------------------------------

def marker_spec(cfg: Profile, job: Job, kind: str = "job") -> Spec:
    """The store entry a finished (``job``) or failed (``job_failed``) job leaves."""
    settings = {k: v for k, v in cfg.as_dict().items() if k != "profile"}
    return {"kind": kind, "version": experiment.SPEC_VERSION, "job": job.label,
            "profile": settings, "data": {"train": experiment.train_split(cfg).digest,
                                          "test": experiment.test_split(cfg).digest}}


def is_done(cfg: Profile, store: Store, job: Job) -> bool:
    """Whether ``job`` finished with these settings and data (its marker is in the store)."""
    return store.exists(marker_spec(cfg, job))


def failure(cfg: Profile, store: Store, job: Job) -> dict | None:
    """The error and log of the last failed attempt, or None."""
    return store.load(marker_spec(cfg, job, "job_failed"))


def record_failure(cfg: Profile, store: Store, job: Job, error: str, log: str = "") -> None:
    store.save(marker_spec(cfg, job, "job_failed"), {"error": error, "log": log,
                                                 "when": time.strftime("%Y-%m-%dT%H:%M:%S")})


# --- running ------------------------------------------------------------------------------

def run(cfg: Profile, store: Store, job: Job) -> list[str]:
    """Compute everything ``job`` owns (cache hits are free) and mark it done; returns
    lines of results to print."""
    lines = {"stage1": _stage1, "kernels": _kernels, "stage2": _stage2,
             "audit": _audit}[job.command](cfg, store, job)
    store.save(marker_spec(cfg, job), {"finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    store.delete(marker_spec(cfg, job, "job_failed"))
    return lines


def _accuracy_line(label: str, result: dict[str, float]) -> str:
    return f"{label}: clean {result['clean']:.2f}%, PGD {result['robust']:.2f}%"


def _worst_cases(cfg: Profile, store: Store, ids: list[NetworkId]) -> list[str]:
    networks = [experiment.network(cfg, store, nid) for nid in ids]
    return [f"{net.label}: worst case {robustness.worst_case_accuracy(cfg, store, net):.2f}%"
            for net in networks]


def _stage1(cfg: Profile, store: Store, job: Job) -> list[str]:
    seed, mode = job.seed, job.mode
    experiment.ensure_stage1(cfg, seed, mode, store)
    if transfers(cfg, mode):  # first: a transfer's PGD pass also evaluates its source
        target = sweeps.final_network(cfg, store, seed, mode)
        for t in cfg.spawn_epochs:
            experiment.transferability(cfg, store,
                                       experiment.stage1_network(cfg, seed, mode, t, store),
                                       target)
    epochs = set(cfg.spawn_epochs) | {float(cfg.stage1_epochs)}
    if mode == "adversarial":
        epochs.add(cfg.sgd_comparison_spawn_epoch)
        if settings.of(cfg) == settings.EPS8:  # section 9's robust overfitting
            epochs.add(radius.overfitting_epoch(cfg))
    lines = [_accuracy_line(f"{mode} seed {seed} epoch {e:g}",
                            experiment.evaluate_stage1(cfg, seed, mode, e, store))
             for e in sorted(epochs)]
    ids = [n for n in robustness.worst_case_networks(cfg, seed)
           if n.stage == 1 and n.mode == mode]
    return lines + _worst_cases(cfg, store, ids)


def _kernels(cfg: Profile, store: Store, job: Job) -> list[str]:
    statistics = kernel_study.kernel_evolution(cfg, store, job.seed, job.mode,
                                               list(cfg.checkpoint_epochs))
    if settings.of(cfg) == settings.EPS8 and job.mode == "adversarial":  # section 9
        kernel_study.kernel_evolution(settings.main_twin(cfg), store, job.seed, job.mode,
                                      list(cfg.checkpoint_epochs))
    if job.seed == cfg.seeds[0] and settings.shows(cfg, "ntk_eigenvectors"):
        for nid in kernel_study.eigen_networks(cfg).values():
            if nid.mode == job.mode:
                kernel_study.eigen_images(cfg, store, experiment.network(cfg, store, nid))
    return [f"{job.mode} seed {job.seed}: final effective rank "
            f"{statistics['effective_rank'][-1]:.2f}"]


def _stage2(cfg: Profile, store: Store, job: Job) -> list[str]:
    nid = job.network
    net = experiment.network(cfg, store, nid)
    lines = []
    if nid in set(section4_ids(cfg, nid.seed)):
        if transfers(cfg, nid.mode):  # first: its PGD pass also evaluates net
            target = sweeps.final_network(cfg, store, nid.seed, nid.mode)
            lines.append(f"tau {experiment.transferability(cfg, store, net, target):.3f}")
        if nid.dynamics == "linearized":
            lines.append(f"relative magnitude {experiment.relative_magnitude(cfg, store, net):.4f}")
    lines.insert(0, _accuracy_line(net.label, experiment.evaluation(cfg, store, net)))
    table1 = [_normalised(cfg, n) for n in tables.sgd_comparison_ids(cfg, nid.seed).values()] \
        if "adversarial" in cfg.modes else []
    if nid in table1:
        kernel_study.trace_kernel(cfg, store, net)
    if nid in {_normalised(cfg, n) for n in robustness.worst_case_networks(cfg, nid.seed)}:
        lines += _worst_cases(cfg, store, [nid])
    return lines


def _audit(cfg: Profile, store: Store, job: Job) -> list[str]:
    lines = []
    for label, (nid, source) in robustness.audited_networks(cfg, job.seed).items():
        results = robustness.audit(cfg, store, experiment.network(cfg, store, nid),
                                   experiment.network(cfg, store, source))
        lines.append(f"{label} (seed {job.seed}): {robustness.verdict(cfg, results)}")
    for nid in robustness.pgd_controls(cfg, job.seed):  # the claims' unaudited controls
        robustness.attack_mask(cfg, store, experiment.network(cfg, store, nid),
                               robustness.book_pgd(cfg))
    return lines
