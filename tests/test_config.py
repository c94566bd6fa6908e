import re
from pathlib import Path

import pytest
import yaml

from ntkbook import config
from ntkbook.config import ProfileError
from ntkbook.data import DataError

BAD_PROFILES = [  # (override, key the message must name)
    ({"stage2_lrr": 0.01}, "stage2_lrr"),
    ({"eps_255": -1}, "eps_255"),
    ({"stage1_epochs": -1}, "stage1_epochs"),
    ({"stage2_epochs": -3}, "stage2_epochs"),
    ({"spawn_epochs": [0, 7]}, "spawn_epochs"),
    ({"n_kernel": 105}, "n_kernel"),
    ({"n_train": 1999}, "n_train"),
    ({"dataset": "mnist"}, "dataset"),
    ({"model": "vgg"}, "model"),
    ({"modes": ["benign", "adverserial"]}, "modes"),
    ({"adversarial_step": "both"}, "adversarial_step"),
    ({"stage1_lr": "1e-4"}, "stage1_lr"),
    ({"stage2_lr": 0}, "stage2_lr"),
    ({"width": 2.5}, "width"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"batch_size": 5000}, "batch_size"),
    ({"flip_epoch": 6}, "flip_epoch"),
    ({"momentum": 1.0}, "momentum"),
    ({"fractional_epochs": [1.0]}, "fractional_epochs"),
    ({"eval_pgd_steps": True}, "eval_pgd_steps"),
    ({"modes": "benign"}, "modes"),
    ({"sgd_comparison_spawn_epoch": 2.5}, "sgd_comparison_spawn_epoch"),
    ({"sgd_comparison_lrs": [0.01, -1]}, "sgd_comparison_lrs"),
    ({"eigen_logit": 10}, "eigen_logit"),
    ({"eigen_vectors": 101}, "eigen_vectors"),
    ({"eigen_step_size": 0}, "eigen_step_size"),
]


@pytest.mark.parametrize("override,key", BAD_PROFILES)
def test_bad_profile_is_rejected_naming_the_key(override, key):
    with pytest.raises(ProfileError, match=f"'{key}'"):
        config.load_profile("smoke", **override)


def test_every_shipped_profile_is_valid():
    for path in sorted(config.PARAMETERS_DIR.glob("*.yaml")):
        cfg = config.load_profile(path.stem)
        assert cfg.profile == path.stem
        assert config.from_mapping(cfg.as_dict()) == cfg  # round trip through YAML keys


def test_paper_profile_has_the_papers_settings():
    cfg = config.load_profile("paper")
    assert (cfg.model, cfg.width, cfg.n_train, cfg.stage1_epochs, cfg.stage2_epochs) == (
        "resnet18", 64, 50000, 100, 100)
    assert (cfg.train_pgd_steps, cfg.eval_pgd_steps, cfg.n_kernel) == (20, 100, 500)
    assert cfg.seeds == (0, 1, 2) and cfg.eps == pytest.approx(4 / 255)
    assert cfg.eval_pgd_step_size == pytest.approx(2 * cfg.eps / 100)
    assert config.load_profile("paper-eps8").eps_255 == 8


def test_missing_key_in_a_profile_file_is_reported(tmp_path):
    values = config.load_profile("smoke").as_dict()
    del values["stage2_lr"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ProfileError, match="stage2_lr"):
        config.load_profile(path)


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ProfileError, match="smoke"):
        config.load_profile("smok")


def test_overrides_are_typed_and_shown_in_the_label():
    cfg = config.load_profile("smoke", stage2_lr=1, spawn_epochs=[0, 1])
    assert cfg.stage2_lr == 1.0 and isinstance(cfg.stage2_lr, float)
    assert cfg.spawn_epochs == (0.0, 1.0)
    assert cfg.label == "smoke (stage2_lr=1.0, spawn_epochs=(0.0, 1.0))"


def test_notebook_namespace_is_validated():
    namespace = {"profile": "smoke", "stage2_lr": 0.5, "In": [], "_": None, "np": yaml}
    assert config.from_notebook(namespace).stage2_lr == 0.5
    with pytest.raises(ProfileError, match="did you mean 'stage2_lr'"):
        config.from_notebook({"profile": "smoke", "stage2lr": 0.5})


def test_a_page_needing_a_missing_mode_stops_naming_it():
    cfg = config.load_profile("smoke", modes=["benign"])
    cfg.require_modes("benign")
    with pytest.raises(ProfileError, match="'adversarial'"):
        cfg.require_modes("benign", "adversarial")


def test_a_misspelled_profile_gets_a_did_you_mean():
    with pytest.raises(ProfileError, match="did you mean 'smoke'"):
        config.load_profile("smok")
    with pytest.raises(ProfileError,
                       match="available profiles: cpu, cpu-cifar100, cpu-eps8, gpu, paper") as error:
        config.load_profile("enormous")
    assert "did you mean" not in str(error.value)


def test_errors_render_as_their_message_in_ipython():
    error = ProfileError("unknown parameter 'stage1_epoch' (did you mean 'stage1_epochs'?)")
    assert error._render_traceback_() == [
        "ProfileError: unknown parameter 'stage1_epoch' (did you mean 'stage1_epochs'?)"]


@pytest.mark.parametrize("name", ["gpu", "paper", "paper-eps8"])
def test_a_gpu_profile_on_a_cpu_only_machine_is_warned_with_an_estimate(name, monkeypatch):
    monkeypatch.setattr(config, "gpu_available", lambda: False)
    warning = config.cpu_only_warning(config.load_profile(name))
    assert warning and f"profile {name} is sized for a GPU" in warning
    assert re.search(r"about [\d.]+ (hours|days)", warning) and "order-of-magnitude" in warning
    monkeypatch.setattr(config, "gpu_available", lambda: True)
    assert config.cpu_only_warning(config.load_profile(name)) is None


@pytest.mark.parametrize("name", ["smoke", "cpu"])
def test_cpu_profiles_are_not_warned(name, monkeypatch):
    monkeypatch.setattr(config, "gpu_available", lambda: False)
    assert config.cpu_only_warning(config.load_profile(name)) is None


def test_the_cpu_estimate_follows_the_calibration_and_the_profile():
    benign = config.load_profile("cpu", modes=["benign"], seeds=[0], stage1_epochs=1,
                                 spawn_epochs=[0, 1], sgd_comparison_spawn_epoch=1,
                                 fractional_epochs=[0.5], n_train=10_000)
    assert config.cpu_stage1_seconds(benign) == pytest.approx(3.0)  # 10,000 images, width 16
    gpu, paper = config.load_profile("gpu"), config.load_profile("paper")
    assert 3 < config.cpu_stage1_seconds(gpu) / 3600 < 30  # hours
    assert config.cpu_stage1_seconds(paper) / 3600 / 24 > 100  # days
    wider = config.load_profile("gpu", width=32)
    assert config.cpu_stage1_seconds(wider) == pytest.approx(
        config.cpu_stage1_seconds(gpu) * config.forward_macs("resnet18", 32)
        / config.forward_macs("resnet18", 16))


def test_gpu_detection_needs_a_device_and_a_jax_gpu_plugin(monkeypatch):
    monkeypatch.setattr(config, "jax_gpu_plugins", lambda: ["xla_cuda12"])
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert not config.gpu_available()  # JAX told to use the CPU only
    monkeypatch.delenv("JAX_PLATFORMS")
    assert config.gpu_available() == bool(list(Path("/dev").glob("nvidia[0-9]*")) or
                                          Path("/dev/kfd").exists())
    monkeypatch.setattr(config, "jax_gpu_plugins", list)
    assert not config.gpu_available()  # a GPU, but JAX's CPU build


def test_from_notebook_checks_the_data_and_warns_before_any_compute(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "gpu_available", lambda: False)
    with pytest.warns(UserWarning, match="profile gpu is sized for a GPU"):
        assert config.from_notebook({"profile": "gpu"}).profile == "gpu"
    (tmp_path / "cifar-10-batches-bin").mkdir()
    monkeypatch.setenv("NTKBOOK_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="cifar-10-batches-bin cannot be used: no training file"):
        config.from_notebook({"profile": "smoke"})
