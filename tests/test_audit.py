"""The robustness audit's images: PGD and the worst case on every audited image, each attack
alone and the gradient-masking checklist on a class-balanced subset of them."""

import numpy as np
import pytest

from ntkbook import config, experiment, robustness
from tests.conftest import TINY


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """The tiny profile with 20 audited images of which 10 make the checklist, its store and
    a trained network."""
    from ntkbook.store import Store
    cfg = config.load_profile("smoke", **{**TINY, "audit_images": 20, "checklist_images": 10})
    store = Store(tmp_path_factory.mktemp("audit") / "store")
    net = experiment.stage1_network(cfg, 0, "benign", cfg.stage1_epochs, store)
    return cfg, store, net


def test_the_checklist_images_are_a_class_balanced_subset_of_the_audited_ones(audited):
    cfg = audited[0]
    positions = robustness.checklist_positions(cfg)
    labels = robustness.audit_images(cfg).labels[positions]
    assert len(set(positions)) == 10 and positions.max() < cfg.audit_images
    assert np.bincount(labels, minlength=cfg.num_classes).tolist() == [1] * cfg.num_classes
    whole = config.load_profile("smoke", **TINY)
    np.testing.assert_array_equal(robustness.checklist_positions(whole), np.arange(20))


def test_the_worst_case_covers_every_audited_image_and_the_checklist_its_subset(audited):
    cfg, store, net = audited
    source = experiment.stage1_network(cfg, 0, "benign", 1, store)
    results = robustness.audit(cfg, store, net, source)
    pgd = robustness.attack_mask(cfg, store, net, robustness.book_pgd(cfg))
    alone = robustness.attack_mask(cfg, store, net, robustness.ensemble(cfg)[3], checklist=True)
    assert len(pgd) == len(robustness.worst_case(cfg, store, net).robust) == 20
    assert len(alone) == 10
    assert results["PGD"] == 100 * pgd.mean()
    clean = robustness.clean_mask(cfg, store, net)
    assert results["checklist clean"] == 100 * clean[robustness.checklist_positions(cfg)].mean()
    assert not (alone & ~clean[robustness.checklist_positions(cfg)]).any()  # broken stays so
    names = [check.check for check in robustness.checklist(cfg, results)]
    assert len(names) == 5 and "random restarts change little" in names


def test_with_every_audited_image_in_the_checklist_the_pgd_entry_is_shared(audited):
    """checklist_images = audit_images: the checklist's PGD is the audit's PGD (one entry)."""
    _, store, _ = audited
    cfg = config.load_profile("smoke", **TINY)
    net = experiment.stage1_network(cfg, 0, "benign", cfg.stage1_epochs, store)
    attack = robustness.book_pgd(cfg, eps=3 * cfg.eps)  # computed by no other test
    before = len(list(store.entries()))
    whole = robustness.attack_mask(cfg, store, net, attack)
    middle = len(list(store.entries()))
    checklist = robustness.attack_mask(cfg, store, net, attack, checklist=True)
    assert len(list(store.entries())) == middle == before + 1
    np.testing.assert_array_equal(whole, checklist)


def test_checklist_images_must_fit_the_audit():
    with pytest.raises(config.ProfileError, match="checklist_images"):
        config.load_profile("smoke", **{**TINY, "checklist_images": 30})
    with pytest.raises(config.ProfileError, match="checklist_images"):
        config.load_profile("smoke", **{**TINY, "checklist_images": 15})


def test_a_profile_file_without_checklist_images_checks_every_audited_image(tmp_path):
    import yaml
    values = config.load_profile("smoke").as_dict()
    del values["checklist_images"]
    path = tmp_path / "older.yaml"
    path.write_text(yaml.safe_dump(values))
    assert config.load_profile(path).checklist_images == values["audit_images"]


def test_overriding_audit_images_moves_a_checklist_that_covered_them_all():
    assert config.load_profile("smoke", **{**TINY, "audit_images": 40}).checklist_images == 40
    kept = config.load_profile("smoke", **{**TINY, "checklist_images": 10, "audit_images": 40})
    assert kept.checklist_images == 10
    decisive = config.load_profile("cpu", audit_images=300)
    assert decisive.checklist_images == 30  # it had its own: kept


def test_a_short_batch_is_padded_to_a_multiple_not_to_a_full_batch():
    assert [robustness.padded_size(n, 100) for n in (1, 20, 21, 45, 99, 100)] == \
        [20, 20, 40, 60, 100, 100]
    assert robustness.padded_size(45, 30) == 30
    assert [robustness.padded_count(n, 100) for n in (0, 1, 100, 145, 200)] == \
        [0, 20, 100, 160, 200]
    shapes = []

    def label_echo(x, y, b):
        shapes.append(len(x))
        return y

    labels = np.arange(145)
    out = robustness._batched(label_echo, np.zeros((145, 2)), labels, 100)
    np.testing.assert_array_equal(out, labels)  # padding never reaches the result
    assert shapes == [100, 60]
