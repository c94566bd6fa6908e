"""The claims registry: every claim driven to each of its verdicts on synthetic numbers.

A fake :class:`ntkbook.evidence.Sources` stands in for the cache. Accuracy claims are driven
through the networks their comparisons read (found by recording which array each network
got); the other claims through the statistic they are built on.
"""

from __future__ import annotations

import numpy as np
import pytest

from ntkbook import claims, kernel_study, robustness, settings, stats, tables
from ntkbook.config import load_profile
from ntkbook.evidence import CLEAN, Net
from ntkbook.experiment import NetworkId

CFG = load_profile("smoke", seeds=[0, 1, 2])
IMAGES = 400
EFFECT = {+1: "claimed", -1: "opposite", 0: "noise"}
VERDICT = {+1: stats.HOLDS, -1: stats.DOES_NOT_HOLD, 0: stats.INCONCLUSIVE}


def correctness(first: int, count: int) -> np.ndarray:
    """(seeds, images): images ``first`` .. ``first + count`` correct, the same on every seed
    but one image that each seed gets wrong differently (a little seed noise)."""
    mask = np.zeros((len(CFG.seeds), IMAGES), bool)
    mask[:, first:first + count] = True
    for s in range(len(CFG.seeds)):
        mask[s, first + s] = False
    return mask


class FakeSources:
    """Synthetic results: every network 50 % correct on images 0-199 unless told otherwise
    (``masks`` by network, or by (network, attack); ``clean`` overrides clean accuracy)."""

    def __init__(self, cfg=CFG, masks=None, clean=None, seed=0):
        self.cfg, self.masks, self.clean = cfg, dict(masks or {}), clean
        self.rng = np.random.default_rng(seed)
        self.issued: dict[int, NetworkId] = {}
        n, epochs = len(cfg.seeds), len(cfg.checkpoint_epochs)
        self.statistics = {mode: {
            "distance_to_final": np.tile(np.linspace(0.08, 0.0, epochs), (n, 1)),
            "velocity": np.full((n, epochs - 1), 0.01),
            "effective_rank": np.full((n, epochs), 5.0),
            "mean_specialization": np.full((n, epochs), 1.1)} for mode in cfg.modes}
        self.distances = {(m1, m2): np.full((n, n), 0.02) for m1 in ("benign", "adversarial")
                          for m2 in ("benign", "adversarial")}
        spawn = len(cfg.spawn_epochs)
        self.tau = {mode: {d: np.full((n, spawn), 0.5) for d in ("standard", "linearized",
                                                               "centered")}
                    for mode in ("benign", "adversarial")}
        self.magnitude = {mode: np.full((n, spawn), 0.1) for mode in ("benign", "adversarial")}
        self.distances_between: dict[tuple[NetworkId, NetworkId], np.ndarray] = {}
        self.radius = {measure: {4: np.full(n, 0.05), 8: np.full(n, 0.05)}
                       for measure in ("kernel_gap", "adversarial_convergence")}

    def noise(self, shape, scale: float) -> np.ndarray:
        return scale * self.rng.standard_normal(shape)

    def correct(self, net: NetworkId, attack: str) -> np.ndarray:
        clean = self.clean.get(net) if isinstance(self.clean, dict) else self.clean
        if attack == CLEAN and clean is not None:
            mask = correctness(0, int(IMAGES * clean / 100))
        else:
            mask = self.masks.get((net, attack), self.masks.get(net, correctness(0, 200))).copy()
        self.issued[id(mask)] = net
        return mask

    def kernel_statistics(self):
        return self.statistics

    def final_kernel_distances(self):
        return self.distances

    def transferability(self):
        return self.tau

    def relative_magnitude(self):
        return self.magnitude

    def by_radius(self, measure: str) -> dict[float, np.ndarray]:
        return self.radius[measure]

    def kernel_distance(self, first: NetworkId, second: NetworkId) -> np.ndarray:
        return self.distances_between.get((first, second), np.full(len(self.cfg.seeds), 0.02))


def claim(key: str) -> claims.Claim:
    return next(c for c in claims.REGISTRY if c.key == key)


def verdict_of(key: str, sources) -> claims.Result:
    c = claim(key)
    return claims.decide(c, c.measure(sources))


ACCURACY_CLAIMS = [c.key for c in claims.REGISTRY if c.unit == "points"]
STATISTIC_CLAIMS = [c.key for c in claims.REGISTRY if c.unit != "points"]


def test_every_claim_is_tested_and_applies_to_the_smoke_profile():
    assert len(claims.REGISTRY) == len({c.key for c in claims.REGISTRY}) == 33
    assert set(ACCURACY_CLAIMS) | set(STATISTIC_CLAIMS) == {c.key for c in claims.REGISTRY}
    assert len(claims.for_page(CFG)) == 30  # all but section 9's
    eps8 = load_profile("smoke-eps8")
    assert {c.page for c in claims.for_page(eps8)} == set(settings.EPS8.claims_of)
    assert {c.key for c in claims.for_page(eps8, settings.SECTION9)} == SECTION9_CLAIMS
    assert set(STATISTIC_CLAIMS) == set(WORLDS)


def sides(key: str) -> list[tuple[tuple, tuple, str]]:
    """((a, its attack), (b, its attack), expect) of each comparison of an accuracy claim,
    read off a recording run."""
    recorder = FakeSources()
    out = []
    for c in claim(key).measure(recorder):
        attacks = c.attack.split(" vs ")
        out.append(((recorder.issued[id(c.a)], attacks[0]),
                    (recorder.issued[id(c.b)], attacks[-1]), c.expect))
    return out


def accuracy_world(key: str, direction: int) -> FakeSources:
    """Every comparison of ``key`` pushed ``direction`` (+1: as claimed, -1: against it,
    0: the same accuracy on different images), under the attacks it reads."""
    masks = {}
    for a, b, expect in sides(key):
        sign = direction * (1 if expect == "greater" else -1)
        if sign > 0:
            masks[a], masks[b] = correctness(0, 320), correctness(0, 160)
        elif sign < 0:
            masks[a], masks[b] = correctness(0, 160), correctness(0, 320)
        else:
            masks[a], masks[b] = correctness(0, 200), correctness(100, 200)
    return FakeSources(masks=masks)


@pytest.mark.parametrize("direction", [+1, -1, 0], ids=EFFECT.get)
@pytest.mark.parametrize("key", ACCURACY_CLAIMS)
def test_an_accuracy_claim_reaches_each_verdict(key, direction):
    result = verdict_of(key, accuracy_world(key, direction))
    expected = VERDICT[direction]
    if direction < 0 and all(a[1] != b[1] for a, b, _ in sides(key)):
        expected = stats.INCONCLUSIVE  # a lower bound under an upper bound proves nothing
    assert result.verdict == expected, (result.ours, result.interval)
    assert result.deciding.attack.split(" vs ")[0] in ("PGD", "worst case", "clean")
    if result.deciding.attack.startswith("worst case"):  # the PGD-only verdict is beside it
        assert result.pgd_verdict in stats.VERDICTS


@pytest.mark.parametrize("key", ACCURACY_CLAIMS)
def test_an_accuracy_claim_on_models_that_did_not_learn_is_not_testable(key):
    world = accuracy_world(key, +1)
    world.clean = 5.0  # below twice chance on CIFAR-10
    result = verdict_of(key, world)
    assert result.verdict == stats.NOT_TESTABLE
    assert "did not learn" in result.reason and "below 20 %" in result.reason
    assert np.isfinite(result.interval.low)  # the numbers are still shown


@pytest.mark.parametrize("rank", ["lower", "higher"])
def test_an_sgd_run_that_did_not_train_is_not_testable(rank):
    key = f"sgd_{rank}_lr_loses_robustness"
    world = accuracy_world(key, +1)
    nets = claims._table1_nets(CFG)
    sgd = nets[f"frozen BN, SGD lr {claims._sgd_lr(CFG, rank):g}"]
    world.clean = {nets["parent"]: 40.0, sgd: 30.0}
    result = verdict_of(key, world)
    assert result.verdict == stats.NOT_TESTABLE and "has not trained" in result.reason
    world.clean = {nets["parent"]: 40.0, sgd: 45.0}
    assert verdict_of(key, world).verdict == stats.HOLDS


def test_robust_claims_use_the_strongest_attack_measured_for_each_side():
    # neither network audited; Table 1 (PGD, as the paper: worst cases for Table 2 and the audit)
    pgd_only = {"adversarial_training_buys_robustness", "sgd_lower_lr_loses_robustness",
                "sgd_higher_lr_loses_robustness", "updating_bn_costs_accuracy",
                "robust_overfitting"}
    clean = {"centered_costs_clean_accuracy", "updating_bn_costs_accuracy"}
    for key in ACCURACY_CLAIMS:
        for c in claim(key).measure(FakeSources()):
            if c.attack == "clean":
                assert key in clean, key
            elif key in pgd_only:
                assert c.attack == "PGD", key
            else:  # the worst case, against PGD on the same images where b is not audited
                assert c.attack.startswith("worst case") and c.pgd is not None, key
    cfg = load_profile("smoke")
    worst = set(robustness.worst_case_networks(cfg, 0))
    table1 = set(tables.sgd_comparison_ids(cfg, 0).values())
    assert table1 & worst == {tables.sgd_comparison_ids(cfg, 0)["frozen BN, centering"]}


def test_a_control_under_a_weaker_attack_can_confirm_a_claim_but_never_refute_it():
    """The centered model's worst case (a lower bound) far below the linearized model's PGD
    accuracy (an upper bound) says nothing about which is more robust."""
    key = "benign_centered_beats_linearized"
    (a, b, _), = sides(key)
    assert a[1] == "worst case" and b[1] != "worst case"
    below = verdict_of(key, FakeSources(masks={a: correctness(0, 100), b: correctness(0, 320)}))
    assert below.interval.high < 0 and below.verdict == stats.INCONCLUSIVE
    above = verdict_of(key, FakeSources(masks={a: correctness(0, 320), b: correctness(0, 100)}))
    assert above.verdict == stats.HOLDS
    with pytest.raises(ValueError, match="only test that a is greater"):
        claims.compare_accuracy(FakeSources(), a[0], b[0], "less", attack=claims.WORST,
                                b_attack=claims.PGD_AUDITED, names=("a", "b"))


def test_the_worst_case_overrules_pgd():
    """PGD says the benign kernel is best; the worst case says it is not: the claim fails."""
    key = "benign_kernel_best_for_adversarial_training"
    masks = {**accuracy_world(key, -1).masks,
             **{(net, "PGD"): m for (net, _), m in accuracy_world(key, +1).masks.items()}}
    result = verdict_of(key, FakeSources(masks=masks))
    assert result.verdict == stats.DOES_NOT_HOLD and result.pgd_verdict == stats.HOLDS


def test_a_conjunction_fails_when_one_component_fails():
    key = "learned_kernel_beats_initial"
    (a1, b, _), (a2, _, _) = sides(key)
    world = FakeSources(masks={a1: correctness(0, 240), a2: correctness(0, 100),
                               b: correctness(0, 200)})
    result = verdict_of(key, world)
    assert result.verdict == stats.DOES_NOT_HOLD
    assert result.deciding.a is not None and result.interval.high < 0


# --- claims on kernels, transfers and magnitudes -------------------------------------------

def early(world: FakeSources) -> int:
    return kernel_study.early_index(world.cfg)


def converges(mode):
    def set_world(world, direction):
        d = world.statistics[mode]["distance_to_final"]
        d[:, 0] = 0.08
        d[:, early(world)] = {+1: 0.005, -1: 0.06, 0: 0.02}[direction] + world.noise(
            3, 0.015 if direction == 0 else 0.001)
    return set_world


def distinct(world, direction):
    across = {+1: 0.05, -1: 0.01, 0: 0.02}[direction]
    for pair in (("benign", "adversarial"), ("adversarial", "benign")):
        world.distances[pair] = across + world.noise((3, 3), 0.02 if direction == 0 else 0.001)


def flip(world, direction):
    gap = list(CFG.checkpoint_epochs)[1:].index(float(CFG.flip_epoch + 1))
    world.statistics["flip"]["velocity"][:, gap] = {+1: 0.05, -1: 0.001, 0: 0.01}[direction] \
        + world.noise(3, 0.02 if direction == 0 else 0.001)


def final_statistic(name, claimed_sign):
    def set_world(world, direction):
        world.statistics["adversarial"][name][:, -1] += claimed_sign * direction * 1.0 \
            + world.noise(3, 1.0 if direction == 0 else 0.05)
    return set_world


def peaks(mode):
    def set_world(world, direction):
        mid = list(CFG.spawn_epochs).index(CFG.sgd_comparison_spawn_epoch)
        world.magnitude[mode][:, mid] = {+1: 0.5, -1: 0.01, 0: 0.1}[direction] + world.noise(
            3, 0.2 if direction == 0 else 0.005)
    return set_world


def transfers_less(mode):
    def set_world(world, direction):
        world.tau[mode]["centered"][:, :-1] = {+1: 0.1, -1: 0.9, 0: 0.5}[direction] \
            + world.noise((3, 1), 0.3 if direction == 0 else 0.01)
        world.tau[mode]["standard"][:, -1] = 1.0  # by construction; must not count
    return set_world


def initial_transfer(mode):
    def set_world(world, direction):
        world.tau[mode]["centered"][:, 0] = {+1: 0.01, -1: 0.5, 0: 0.1}[direction] \
            + world.noise(3, 0.1 if direction == 0 else 0.005)
    return set_world


def sgd_distance(world, direction):
    nets = claims._table1_nets(CFG)
    high = nets[f"frozen BN, SGD lr {max(CFG.sgd_comparison_lrs):g}"]
    world.distances_between[high, nets["parent"]] = {+1: 0.05, -1: 0.001, 0: 0.02}[
        direction] + world.noise(3, 0.02 if direction == 0 else 0.001)


def nearer_adversarial(world, direction):
    end = float(CFG.stage1_epochs)
    benign = Net("benign", end)
    world.distances_between[benign, Net("adversarial", end)] = {
        +1: 0.005, -1: 0.05, 0: 0.02}[direction] + world.noise(3, 0.02 if direction == 0
                                                              else 0.001)


def flip_settles(world, direction):
    at = list(CFG.checkpoint_epochs).index(float(CFG.flip_epoch))
    world.statistics["flip"]["distance_to_final"][:, at] = {+1: 0.2, -1: 0.0, 0: 0.06}[
        direction] + world.noise(3, 0.05 if direction == 0 else 0.001)


def initial_fails(world, direction):
    k0 = claims._table2_nets(CFG)["K_0"]
    world.clean = {k0: {+1: 10.0, -1: 60.0, 0: 20.0}[direction]}
    if direction == 0:  # 20 % on average, spread over seeds
        world.masks[k0, CLEAN] = np.stack([correctness(0, n)[0] for n in (40, 80, 120)])
        world.clean = None


def larger_at_eps8(measure):
    def set_world(world, direction):
        world.radius[measure][8] = world.radius[measure][4] + {+1: 0.02, -1: -0.02, 0: 0.0}[
            direction] + world.noise(3, 0.02 if direction == 0 else 0.001)
    return set_world


SECTION9_CLAIMS = {"larger_radius_widens_kernel_gap", "larger_radius_slows_adversarial_kernel",
                   "robust_overfitting"}
WORLDS = {
    "larger_radius_widens_kernel_gap": larger_at_eps8("kernel_gap"),
    "larger_radius_slows_adversarial_kernel": larger_at_eps8("adversarial_convergence"),
    **{f"{m}_kernel_converges_early": converges(m) for m in ("benign", "adversarial")},
    "benign_kernel_nearer_adversarial_than_initial": nearer_adversarial,
    "flip_kernel_moves_after_switch": flip_settles,
    "initial_kernel_fails_adversarial_training": initial_fails,
    "adversarial_kernel_is_distinct": distinct,
    "flip_velocity_spikes": flip,
    "adversarial_kernel_higher_rank": final_statistic("effective_rank", +1),
    "adversarial_kernel_less_specialised": final_statistic("mean_specialization", -1),
    **{f"{m}_relative_magnitude_peaks": peaks(m) for m in ("benign", "adversarial")},
    **{f"{m}_centered_transfers_less": transfers_less(m) for m in ("benign", "adversarial")},
    **{f"{m}_initial_kernel_does_not_transfer": initial_transfer(m)
       for m in ("benign", "adversarial")},
    "sgd_moves_kernel_more_at_higher_lr": sgd_distance,
}


@pytest.mark.parametrize("direction", [+1, -1, 0], ids=EFFECT.get)
@pytest.mark.parametrize("key", STATISTIC_CLAIMS)
def test_a_claim_on_a_statistic_reaches_each_verdict(key, direction):
    world = FakeSources(seed=7)
    WORLDS[key](world, direction)
    result = verdict_of(key, world)
    assert result.verdict == VERDICT[direction], (result.ours, result.interval)


def test_transfer_at_the_end_of_stage_1_is_left_out():
    """tau = 1 at t = T by construction: including it would favour the claim."""
    world = FakeSources()
    world.tau["benign"]["centered"][:] = 0.6
    world.tau["benign"]["standard"][:, :-1] = 0.6
    world.tau["benign"]["standard"][:, -1] = 1.0
    result = verdict_of("benign_centered_transfers_less", world)
    assert result.interval.estimate == pytest.approx(0.0)


def test_flip_is_compared_with_the_benign_run_at_the_same_epoch():
    """A velocity that rises at the switch in both runs is no spike of adversarial training."""
    world = FakeSources(seed=3)
    gap = list(CFG.checkpoint_epochs)[1:].index(float(CFG.flip_epoch + 1))
    for mode, value in (("flip", 0.04), ("benign", 0.06)):
        world.statistics[mode]["velocity"][:, gap] = value + world.noise(3, 0.001)
        world.statistics[mode]["velocity"][:, gap - 1] = 0.018
    assert verdict_of("flip_velocity_spikes", world).verdict == stats.DOES_NOT_HOLD


def test_distinct_kernel_compares_different_seeds_on_both_sides():
    """Same-seed benign-adversarial distances (the diagonal) are not used."""
    world = FakeSources()
    for pair in world.distances:
        world.distances[pair] = np.full((3, 3), 0.02)
    for pair in (("benign", "adversarial"), ("adversarial", "benign")):
        np.fill_diagonal(world.distances[pair], 0.0)  # close within a seed, not across
    result = verdict_of("adversarial_kernel_is_distinct", world)
    assert result.interval.estimate == pytest.approx(0.0)


def test_results_carry_what_run_json_needs():
    result = verdict_of("centered_beats_adversarial_training",
                        accuracy_world("centered_beats_adversarial_training", +1))
    record = result.as_dict()
    for key in ("page", "section", "claim", "ours", "paper", "verdict", "estimate", "low", "high",
                "unit", "n_seeds", "n_images", "method"):
        assert key in record, key
    assert record["n_seeds"] == 3 and record["n_images"] == IMAGES
    assert record["per_seed"]["a"] == pytest.approx([79.75, 79.75, 79.75])


def test_an_undefined_tau_makes_the_transfer_claim_not_testable():
    world = FakeSources()
    world.tau["adversarial"]["centered"][:, :-1] = np.nan
    result = verdict_of("adversarial_centered_transfers_less", world)
    assert result.verdict == stats.NOT_TESTABLE and "undefined" in result.reason


def test_the_paper_column_gives_the_numbers_of_the_setting_decided():
    cifar100, eps8 = load_profile("smoke-cifar100"), load_profile("smoke-eps8")
    centered = claim("centered_beats_adversarial_training")
    assert centered.paper_for(CFG) == "55.46 vs 51.77 (PGD-100)"
    assert centered.paper_for(cifar100) == "27.35 vs 24.42 (PGD-100)"
    assert centered.paper_for(eps8) == "49.15 vs 35.80 (PGD-100)"
    early = claim("early_adversarial_kernel_centered_beats_adversarial_training").paper_for(eps8)
    assert early == "62.09 vs 51.77 (PGD-100) at CIFAR-10, eps = 4/255 (not reported for " \
                    "eps = 8/255)"  # never passed off as the setting's own number
    assert claim("adversarial_kernel_higher_rank").paper_for(cifar100) == "higher (no number)"
    world = FakeSources(cfg=load_profile("smoke-eps8", seeds=[0, 1, 2]))
    decided = {r.claim.key: r.as_dict() for r in claims.evaluate(world, "linearized_training")}
    assert decided["centered_beats_adversarial_training"]["paper"] == "49.15 vs 35.80 (PGD-100)"
    assert decided["centered_beats_adversarial_training"]["paper_difference"] == 13.35
