"""What a profile costs: the book's work counted in image forwards, from its own plan.

One unit F is one forward of one image (2 x :func:`ntkbook.config.forward_macs` FLOPs). Every
image of every stage of :func:`ntkbook.jobs.plan` is counted: a training step 3F; the stage-1
adversarial step of ``clean_then_adversarial`` (6 + 2k)F; a PGD iteration 2F (forward and
input gradient); a Square query :data:`SQUARE_QUERY` F; a stage-2 step 5F and anything through a stage-2 (jvp) model
:data:`STAGE2_FACTOR` times its standard cost; a per-class kernel of N images (1 + 2C)F per
image plus its Gram matrix; a transfer one forward of its target (the PGD pass is the
source's own evaluation, :func:`ntkbook.experiment.transfer_accuracy`). The worst case
attacks every audited image with the book's PGD and a fraction ``survivors`` of them with the
rest of the ensemble (AutoAttack's rule: later attacks see only the images still robust),
each short batch padded as it runs (:func:`ntkbook.robustness.padded_count`);
``survivors=1`` is the conservative count. At eps = 8/255 the adversarial runs and kernels at
eps = 4/255 that section 9 compares with are counted too. Time is work over a rate the caller
measured.
"""

from __future__ import annotations

import math

from ntkbook.config import Profile, forward_macs

STAGE2_STEP = 5.0  # a linearized or centered step, in F (benchmarks/limits.py)
STAGE2_FACTOR = 2.5  # a forward or attack through a stage-2 model against a standard one
EIGEN_STEP = 12.0  # one eigen-image step of one image: gradient of a gradient, in F
# a Square query (a forward in eval mode, no gradient), in F: measured at 0.17-0.32 of a PGD
# iteration (2F) for the small CNN and 0.40 for ResNet-18 (benchmarks/RESULTS.md), rounded up
SQUARE_QUERY = {"small_cnn": 0.65, "resnet18": 1.0}
PARTS = ("stage 1", "stage 2", "evaluations", "transfers", "kernels", "eigen images",
         "worst cases", "audit")


def forward_flops(cfg: Profile) -> float:
    """FLOPs of one image's forward pass."""
    return 2.0 * forward_macs(cfg.model, cfg.width)


def parameters(cfg: Profile) -> int:
    """The model's parameter count, from shapes alone (nothing is computed)."""
    import jax
    import jax.numpy as jnp

    from ntkbook import experiment
    shapes = jax.eval_shape(lambda: experiment.model_for(cfg).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(shapes["params"]))


def _later_attacks_units(cfg: Profile) -> float:
    """Image forwards of the ensemble's attacks after the book's PGD, on one image."""
    k = cfg.audit_steps
    targets = min(cfg.audit_targets, cfg.num_classes - 1)
    return ((2 * k * cfg.audit_restarts + 1) + (2 * k + 1) + targets * (2 * k + 2)
            + SQUARE_QUERY[cfg.model] * cfg.audit_queries + 1)


def ensemble_units(cfg: Profile, survivors: float = 1.0) -> float:
    """Image forwards of the worst case on one image: clean prediction and the book's PGD on
    every image, the other attacks on a fraction ``survivors``."""
    first = 1 + (2 * cfg.eval_pgd_steps + 1)
    return first + survivors * _later_attacks_units(cfg)


def worst_case_units(cfg: Profile, survivors: float = 1.0) -> float:
    """Image forwards of one network's worst case on the audited images, the survivors'
    batch padded as it runs (:func:`ntkbook.robustness.padded_count`)."""
    from ntkbook import robustness
    attacked = robustness.padded_count(math.ceil(cfg.audit_images * survivors),
                                       robustness.batch_size(cfg))
    return cfg.audit_images * ensemble_units(cfg, 0.0) + attacked * _later_attacks_units(cfg)


def forward_units(cfg: Profile, survivors: float = 1.0) -> dict[str, float]:
    """Image forwards of every part of the book under ``cfg`` (:data:`PARTS`)."""
    from ntkbook import jobs, kernel_study, radius, robustness, settings, sweeps, tables
    from ntkbook.experiment import NetworkId

    k_train, k_eval = cfg.train_pgd_steps, cfg.eval_pgd_steps
    clean_first = cfg.adversarial_step == "clean_then_adversarial"
    adversarial_step = (6 if clean_first else 3) + 2 * k_train
    per_epoch = (cfg.n_train // cfg.batch_size) * cfg.batch_size

    def m(nid: NetworkId) -> float:
        return 1.0 if nid.stage == 1 else STAGE2_FACTOR

    end = float(cfg.stage1_epochs)
    units = dict.fromkeys(PARTS, 0.0)
    larger_radius = settings.of(cfg) == settings.EPS8 and "adversarial" in cfg.modes
    trained = list(cfg.modes) + (["adversarial"] if larger_radius else [])  # + eps 4's
    for mode in trained:
        adversarial_epochs = {"benign": 0, "adversarial": cfg.stage1_epochs,
                              "flip": cfg.stage1_epochs - cfg.flip_epoch}[mode]
        epochs = (cfg.stage1_epochs - adversarial_epochs) * 3 + adversarial_epochs * \
            adversarial_step
        units["stage 1"] += len(cfg.seeds) * per_epoch * epochs

    evaluated, worst = set(), set()
    for seed in cfg.seeds:
        second = jobs.stage2_ids(cfg, seed)
        for nid in second:
            step = STAGE2_STEP * ((2 if clean_first else 1) + k_train) if nid.adversarial \
                else STAGE2_STEP
            units["stage 2"] += cfg.stage2_epochs * per_epoch * step
        for mode in cfg.modes:
            epochs = set(cfg.spawn_epochs) | {end}
            if mode == "adversarial":
                epochs.add(cfg.sgd_comparison_spawn_epoch)
                if larger_radius:
                    epochs.add(radius.overfitting_epoch(cfg))
            evaluated |= {NetworkId(seed, mode, float(e)) for e in epochs}
        evaluated |= set(second) | set(tables.table_networks(cfg, seed))
        for mode in sweeps.modes(cfg):  # section 5: every sweep network's examples on the final
            for t in cfg.spawn_epochs:
                for dynamics in ("standard",) + sweeps.STAGE2_DYNAMICS:
                    evaluated.add(NetworkId(seed, mode, float(t), dynamics))
                    if jobs.transfers(cfg, mode):
                        units["transfers"] += cfg.n_test  # the target's forward
                    if dynamics == "linearized":  # relative magnitude
                        units["transfers"] += cfg.n_test * (STAGE2_FACTOR + 1)
        worst |= set(robustness.worst_case_networks(cfg, seed))
        if jobs.audits(cfg):
            # the checklist (each attack alone, transfer, sweeps) on its correctly classified
            # images, counted as all of them, padded as they run
            checked = robustness.padded_count(cfg.checklist_images, robustness.batch_size(cfg))
            for nid, source in robustness.audited_networks(cfg, seed).values():
                attacks = 2 * k_eval * (1 + len(robustness.EPS_MULTIPLIERS)) + 2 * sum(
                    k_eval * s for s in robustness.STEP_MULTIPLIERS[1:]) + 2 * k_eval * m(
                    source) / m(nid)
                units["audit"] += checked * m(nid) * (attacks + ensemble_units(cfg))
            for nid in robustness.pgd_controls(cfg, seed):
                units["audit"] += cfg.audit_images * m(nid) * (2 * k_eval + 2)
    units["evaluations"] = sum(cfg.n_test * m(nid) * (2 * k_eval + 2) for nid in evaluated)
    units["worst cases"] = sum(m(nid) * worst_case_units(cfg, survivors) for nid in worst)

    kerneled = [NetworkId(seed, mode, float(e)) for seed in cfg.seeds for mode in trained
                for e in cfg.checkpoint_epochs]
    if "adversarial" in cfg.modes:
        kerneled += [nid for seed in cfg.seeds
                     for nid in tables.sgd_comparison_ids(cfg, seed).values() if nid.stage == 2]
    per_image = 1 + 2 * cfg.num_classes
    gram = 2 * cfg.num_classes * cfg.n_kernel ** 2 * parameters(cfg) / forward_flops(cfg)
    units["kernels"] = sum(cfg.n_kernel * per_image * m(nid) + gram for nid in kerneled)
    for _ in kernel_study.eigen_networks(cfg) if settings.shows(cfg, "ntk_eigenvectors") else []:
        units["eigen images"] += cfg.eigen_vectors * (
            3 * cfg.n_kernel + 2 * cfg.eigen_steps * EIGEN_STEP)
    return units


def estimate(cfg: Profile, gflops: float, survivors: float = 1.0) -> str:
    """The work of every part in TFLOP and minutes at ``gflops`` useful GFLOP/s."""
    flops = {k: v * forward_flops(cfg) for k, v in forward_units(cfg, survivors).items()}
    total = sum(flops.values())
    lines = [f"profile {cfg.label}: {total / 1e12:.0f} TFLOP of image forwards "
             f"(F = {forward_flops(cfg) / 1e6:.1f} MFLOP), {total / gflops / 1e9 / 60:.0f} "
             f"minutes at {gflops:g} GFLOP/s (worst case: {survivors:.0%} of the audited "
             "images survive the book's PGD)"]
    lines += [f"  {part}: {value / 1e12:.1f} TFLOP, {value / gflops / 1e9 / 60:.1f} min"
              for part, value in flops.items()]
    return "\n".join(lines)
