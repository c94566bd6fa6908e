"""Profiles: one YAML file in ``parameters/`` becomes one frozen, validated :class:`Profile`.

Every value is checked before any compute. Papermill passes the same keys as notebook
parameters; :func:`from_notebook` validates them inside a notebook, checks the data folder and
warns when the profile is too large for a machine without a GPU.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.metadata
import importlib.util
import os
import pkgutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from ntkbook import data

PARAMETERS_DIR = Path(__file__).resolve().parents[1] / "parameters"

DATASETS = {"cifar10": 10, "cifar100": 100}
MODELS = ("small_cnn", "resnet18")
MODEL_NAMES = {"small_cnn": "a small CNN", "resnet18": "a ResNet-18"}  # in prose
MODES = ("benign", "adversarial", "flip")
ADVERSARIAL_STEPS = ("clean_then_adversarial", "adversarial_only")


class ProfileError(ValueError):
    """A profile value is unknown, mistyped or impossible."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of the traceback: the message says it all."""
        return [f"{type(self).__name__}: {self}"]


@dataclasses.dataclass(frozen=True)
class Profile:
    """All settings of one reproduction; see ``parameters/paper.yaml`` for their meaning."""

    profile: str
    dataset: str
    model: str
    width: int
    n_train: int
    n_test: int
    n_kernel: int
    batch_size: int
    eval_batch_size: int
    seeds: tuple[int, ...]
    modes: tuple[str, ...]
    stage1_epochs: int
    stage1_lr: float
    momentum: float
    flip_epoch: int
    fractional_epochs: tuple[float, ...]
    eps_255: float
    train_pgd_steps: int
    eval_pgd_steps: int
    adversarial_step: str
    spawn_epochs: tuple[float, ...]
    stage2_epochs: int
    stage2_lr: float
    sgd_comparison_spawn_epoch: float
    sgd_comparison_lrs: tuple[float, ...]
    eigen_logit: int
    eigen_vectors: int
    eigen_steps: int
    eigen_step_size: float
    audit_images: int
    audit_steps: int
    audit_restarts: int
    audit_targets: int
    audit_queries: int
    checklist_images: int
    overridden: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset]

    @property
    def eps(self) -> float:
        """L-inf radius in pixel units ([0, 1] images)."""
        return self.eps_255 / 255.0

    @property
    def train_pgd_step_size(self) -> float:
        return 2.0 * self.eps / max(self.train_pgd_steps, 1)

    @property
    def eval_pgd_step_size(self) -> float:
        return 2.0 * self.eps / max(self.eval_pgd_steps, 1)

    @property
    def checkpoint_epochs(self) -> tuple[float, ...]:
        """Every epoch at which stage 1 saves a checkpoint, in order."""
        whole = [float(e) for e in range(self.stage1_epochs + 1)]
        return tuple(sorted(set(whole) | set(self.fractional_epochs)))

    @property
    def label(self) -> str:
        """The profile name, plus what was overridden; printed on every figure."""
        if not self.overridden:
            return self.profile
        changes = ", ".join(f"{k}={getattr(self, k)}" for k in self.overridden)
        return f"{self.profile} ({changes})"

    def require_modes(self, *modes: str) -> None:
        """Stop a page that needs stage-1 ``modes`` the profile does not train."""
        missing = [m for m in modes if m not in self.modes]
        if missing:
            raise ProfileError(f"parameter 'modes': this page needs {missing} in modes, "
                               f"got {list(self.modes)}")

    def as_dict(self) -> dict[str, Any]:
        """The YAML keys and their values (lists for tuples)."""
        out = {}
        for f in parameter_fields():
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def parameter_fields() -> list[dataclasses.Field]:
    """The fields a profile file sets (everything but bookkeeping)."""
    return [f for f in dataclasses.fields(Profile) if f.name != "overridden"]


# keys a profile file may leave out, and the key whose value they then take (also when that
# key is overridden and they had its value)
DEFAULTS = {"checklist_images": "audit_images"}  # the checklist on every audited image


_FIELD_TYPES = get_type_hints(Profile)


def _coerce(key: str, value: Any) -> Any:
    """Check ``value`` against the field's type; return it in canonical form."""
    expected = _FIELD_TYPES[key]
    if get_origin(expected) is tuple:
        item_type = get_args(expected)[0]
        if not isinstance(value, (list, tuple)):
            raise ProfileError(f"parameter '{key}': must be a list, got {value!r}")
        return tuple(_coerce_scalar(key, item, item_type) for item in value)
    return _coerce_scalar(key, value, expected)


def _coerce_scalar(key: str, value: Any, expected: type) -> Any:
    if isinstance(value, bool) or (expected is not str and isinstance(value, str)):
        raise ProfileError(f"parameter '{key}': must be {expected.__name__}, got {value!r}")
    if expected is float and isinstance(value, (int, float)):
        return float(value)
    if expected is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, expected):
        raise ProfileError(f"parameter '{key}': must be {expected.__name__}, got {value!r}")
    return value


def _check(ok: bool, key: str, message: str, value: Any) -> None:
    if not ok:
        raise ProfileError(f"parameter '{key}': {message}, got {value!r}")


def _check_choice(key: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    _check(value in allowed, key, f"must be one of {', '.join(allowed)}", value)


def _validate(p: Profile) -> None:
    """Raise :class:`ProfileError` on the first impossible value."""
    _check_choice("dataset", p.dataset, list(DATASETS))
    _check_choice("model", p.model, MODELS)
    _check_choice("adversarial_step", p.adversarial_step, ADVERSARIAL_STEPS)
    for mode in p.modes:
        _check_choice("modes", mode, MODES)
    _check(len(p.modes) > 0 and len(set(p.modes)) == len(p.modes), "modes",
           "must be a non-empty list without repeats", list(p.modes))
    _check(len(p.seeds) > 0 and len(set(p.seeds)) == len(p.seeds)
           and all(s >= 0 for s in p.seeds), "seeds",
           "must be a non-empty list of distinct non-negative integers", list(p.seeds))
    for key in ("width", "batch_size", "eval_batch_size"):
        _check(getattr(p, key) > 0, key, "must be > 0", getattr(p, key))
    for key in ("n_train", "n_test", "n_kernel", "audit_images"):
        value = getattr(p, key)
        _check(value > 0 and value % p.num_classes == 0, key,
               f"must be a positive multiple of the {p.num_classes} classes of {p.dataset}",
               value)
    _check(p.batch_size <= p.n_train, "batch_size", f"must be <= n_train ({p.n_train})",
           p.batch_size)
    _check(p.n_kernel <= p.n_train, "n_kernel", f"must be <= n_train ({p.n_train})", p.n_kernel)
    _check(p.audit_images <= p.n_test, "audit_images", f"must be <= n_test ({p.n_test})",
           p.audit_images)
    _check(0 < p.checklist_images <= p.audit_images and p.checklist_images % p.num_classes == 0,
           "checklist_images", f"must be a positive multiple of the {p.num_classes} classes, "
           f"<= audit_images ({p.audit_images})", p.checklist_images)
    for key in ("audit_steps", "audit_restarts", "audit_queries"):
        _check(getattr(p, key) >= 1, key, "must be >= 1", getattr(p, key))
    _check(1 <= p.audit_targets < p.num_classes, "audit_targets",
           f"must lie in 1..{p.num_classes - 1} (classes other than the label)", p.audit_targets)
    for key in ("stage1_epochs", "stage2_epochs", "train_pgd_steps", "eval_pgd_steps"):
        _check(getattr(p, key) >= 0, key, "must be >= 0", getattr(p, key))
    for key in ("stage1_lr", "stage2_lr", "eigen_step_size"):
        _check(getattr(p, key) > 0, key, "must be > 0", getattr(p, key))
    _check(len(p.sgd_comparison_lrs) > 0 and all(lr > 0 for lr in p.sgd_comparison_lrs),
           "sgd_comparison_lrs", "must be a non-empty list of learning rates > 0",
           list(p.sgd_comparison_lrs))
    _check(0 <= p.eigen_logit < p.num_classes, "eigen_logit",
           f"must be a class index of {p.dataset} (0..{p.num_classes - 1})", p.eigen_logit)
    _check(0 < p.eigen_vectors <= p.n_kernel, "eigen_vectors",
           f"must lie in 1..n_kernel ({p.n_kernel})", p.eigen_vectors)
    _check(p.eigen_steps >= 0, "eigen_steps", "must be >= 0", p.eigen_steps)
    _check(0 <= p.momentum < 1, "momentum", "must be in [0, 1)", p.momentum)
    _check(0 <= p.eps_255 <= 255, "eps_255", "must be in [0, 255] (eps = eps_255 / 255)",
           p.eps_255)
    if "flip" in p.modes:
        _check(0 < p.flip_epoch < p.stage1_epochs, "flip_epoch",
               f"must lie strictly between 0 and stage1_epochs ({p.stage1_epochs})",
               p.flip_epoch)
    for epoch in p.fractional_epochs:
        _check(0 < epoch < p.stage1_epochs and not float(epoch).is_integer(),
               "fractional_epochs",
               f"must be non-integer epochs inside stage 1 (0, {p.stage1_epochs})", epoch)
    for key, epochs in (("spawn_epochs", p.spawn_epochs),
                        ("sgd_comparison_spawn_epoch", (p.sgd_comparison_spawn_epoch,))):
        for epoch in epochs:
            _check(epoch in p.checkpoint_epochs, key,
                   f"must be stage-1 checkpoint epochs (0..{p.stage1_epochs} or one of "
                   f"fractional_epochs {list(p.fractional_epochs)})", epoch)


def from_mapping(values: Mapping[str, Any], *, base: Profile | None = None) -> Profile:
    """Build a validated profile from ``values``; with ``base``, values are overrides."""
    known = {f.name for f in parameter_fields()}
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ProfileError(f"unknown parameter '{key}'{hint}; known parameters: "
                               f"{', '.join(sorted(known))}")
    values = {**{key: values[source] for key, source in DEFAULTS.items()
                 if key not in values and source in values
                 and (base is None or getattr(base, key) == getattr(base, source))}, **values}
    coerced = {key: _coerce(key, value) for key, value in values.items()}
    if base is None:
        missing = sorted(known - set(coerced))
        if missing:
            raise ProfileError(f"missing parameter(s): {', '.join(missing)}")
        profile = Profile(**coerced)
    else:
        changed = tuple(k for k, v in coerced.items()
                        if k != "profile" and getattr(base, k) != v)
        profile = dataclasses.replace(base, **coerced,
                                      overridden=tuple(dict.fromkeys(base.overridden + changed)))
    _validate(profile)
    return profile


def available_profiles() -> list[str]:
    """The profile names of ``parameters/``."""
    return sorted(p.stem for p in PARAMETERS_DIR.glob("*.yaml"))


def profile_path(name_or_path: str | Path) -> Path:
    """``smoke`` -> ``parameters/smoke.yaml``; an existing path is used as it is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ProfileError(f"parameter 'profile': no profile file {path}; available "
                               f"profiles: {', '.join(available_profiles())}")
        return path
    candidate = PARAMETERS_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        available = available_profiles()
        close = difflib.get_close_matches(str(name_or_path), available, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ProfileError(f"parameter 'profile': unknown profile '{name_or_path}'{hint}; "
                           f"available profiles: {', '.join(available)} (the files of "
                           f"{PARAMETERS_DIR}), or a path to a profile YAML file")
    return candidate


def load_profile(name_or_path: str | Path, **overrides: Any) -> Profile:
    """Read ``parameters/<name>.yaml`` (or a YAML path), apply overrides, validate."""
    path = profile_path(name_or_path)
    with path.open() as handle:
        values = yaml.safe_load(handle)
    if not isinstance(values, dict):
        raise ProfileError(f"{path}: a profile must be a YAML mapping of parameters")
    try:
        profile = from_mapping(values)
    except ProfileError as error:
        raise ProfileError(f"{path}: {error}") from None
    return from_mapping(overrides, base=profile) if overrides else profile


def _assigned_literals(source: str) -> list[str] | None:
    """The names a cell assigns, if it holds only ``name = <literal>`` lines (the shape of a
    parameters cell and of papermill's injected cell); otherwise None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = []
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            return None
        try:
            ast.literal_eval(statement.value)
        except ValueError:
            return None
        names.append(statement.targets[0].id)
    return names


# --- cost on a machine without a GPU ------------------------------------------------------

CPU_SECONDS_PER_IMAGE = 3.0 / 10_000  # one benign small-CNN (width 16) step, 2 CPU cores
CPU_WARNING_HOURS = 1.0  # the cpu profile's stage 1 takes about 20 minutes


def forward_macs(model: str, width: int) -> int:
    """Multiply-adds of the convolutions of one 32x32 image's forward pass (the rest is
    negligible): the stem, then stages whose width doubles as their resolution halves."""
    if model == "small_cnn":
        return 27_648 * width + 9_216 * width ** 2
    return 27_648 * width + 135_168 * width ** 2  # resnet18


def _step_units(p: Profile, mode: str) -> float:
    """Stage-1 training-step equivalents per image per epoch of ``mode``, averaged over the
    epochs: an adversarial epoch costs its PGD steps plus one (two for
    clean_then_adversarial) training steps; flip is benign until ``flip_epoch``."""
    adversarial = p.train_pgd_steps + (2 if p.adversarial_step == "clean_then_adversarial"
                                       else 1)
    if mode == "benign":
        return 1.0
    if mode == "adversarial":
        return float(adversarial)
    return (p.flip_epoch + (p.stage1_epochs - p.flip_epoch) * adversarial) / p.stage1_epochs


def cpu_stage1_seconds(p: Profile) -> float:
    """An order-of-magnitude estimate of stage 1's training time on 2 CPU cores: calibrated on
    the published cpu run (about 3 s per epoch of 10,000 images for the benign small CNN of
    width 16), scaled by the model's multiply-adds, the PGD steps, epochs, images, modes and
    seeds. ResNet-18 steps measured on that CPU (benchmarks/RESULTS.md) agree within 1.5x."""
    per_image = CPU_SECONDS_PER_IMAGE * forward_macs(p.model, p.width) / forward_macs(
        "small_cnn", 16)
    units = sum(_step_units(p, mode) for mode in p.modes)
    return per_image * units * p.stage1_epochs * p.n_train * len(p.seeds)


def gpu_available() -> bool:
    """Whether JAX will find a GPU, judged without importing JAX (whose start would take the
    GPU's memory in the process that asks): a CUDA or ROCm plugin of JAX is installed, a GPU
    device exists, and ``JAX_PLATFORMS`` does not restrict JAX to other platforms."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms and not any(gpu in platforms for gpu in ("cuda", "gpu", "rocm")):
        return False
    devices = list(Path("/dev").glob("nvidia[0-9]*")) + list(Path("/dev").glob("kfd"))
    return bool(devices) and bool(jax_gpu_plugins())


def jax_gpu_plugins() -> list[str]:
    """The CUDA and ROCm plugins of JAX installed here, found where JAX looks for plugins (the
    ``jax_plugins`` entry points and namespace package)."""
    names = {entry.name for entry in importlib.metadata.entry_points(group="jax_plugins")}
    spec = importlib.util.find_spec("jax_plugins")
    if spec is not None and spec.submodule_search_locations:
        names |= {module.name for module in pkgutil.iter_modules(spec.submodule_search_locations)}
    return sorted(name for name in names if "cuda" in name or "rocm" in name)


def _duration(seconds: float) -> str:
    """``seconds`` in hours or days, to two significant digits."""
    hours = seconds / 3600
    value, unit = (hours, "hours") if hours < 48 else (hours / 24, "days")
    return f"{float(f'{value:.2g}'):g} {unit}"


def cpu_only_warning(p: Profile) -> str | None:
    """A warning when ``p`` is sized for a GPU (its stage 1 alone would take over
    :data:`CPU_WARNING_HOURS` on a CPU) and JAX has no GPU here; else None."""
    seconds = cpu_stage1_seconds(p)
    if seconds < CPU_WARNING_HOURS * 3600 or gpu_available():
        return None
    return (f"profile {p.label} is sized for a GPU, and JAX finds none here: on this "
            f"machine's CPU its stage-1 training alone would take about {_duration(seconds)}, "
            f"and the later stages as long again or more (an order-of-magnitude estimate: "
            f"3 s per epoch of 10,000 images for the small CNN of width 16 on 2 cores, scaled "
            f"by multiply-adds per image, PGD steps, epochs, images, modes and seeds). Use "
            f"profile cpu or smoke here, or a machine with a GPU and JAX's CUDA build "
            f"(README, section GPU).")


PAPERMILL_HEADER = "# Parameters"  # the first line of papermill's injected cell


def _parameter_cell_names(history: Sequence[str]) -> list[str]:
    """Names set by the parameter cells run just before the current cell (IPython's ``In``
    ends with the current cell): the cell before it, and when that is papermill's injected
    cell, the parameters cell before that one."""
    names: list[str] = []
    for position in (-2, -3):
        if len(history) < -position:
            break
        assigned = _assigned_literals(history[position])
        if assigned is None:
            break
        names += assigned
        if not history[position].lstrip().startswith(PAPERMILL_HEADER):
            break
    return names


def from_notebook(namespace: Mapping[str, Any]) -> Profile:
    """Validate a notebook's parameters: ``profile`` plus any overrides; call it in the cell
    right after the parameters cell.

    In a kernel, the parameters are the names set by the parameter cells run just before (the
    parameters cell and papermill's injected cell, found in IPython's input history ``In``)
    plus any name of a profile key; every such name must be a profile key, so a mistyped
    papermill ``-p`` parameter is reported, while the notebook's own variables from an
    earlier run are ignored: re-running the cells of a live kernel works. A namespace without
    ``In`` (a plain mapping) is read as the parameters themselves.

    Then, still before any compute, the data folder is checked (:class:`ntkbook.data.DataError`)
    and :func:`cpu_only_warning` is issued as a warning.
    """
    known = {f.name for f in parameter_fields()}
    history = namespace.get("In")
    if isinstance(history, list):
        names = set(_parameter_cell_names(history)) | (known & set(namespace))
    else:
        names = {name for name in namespace if not name.startswith("_")}
    values = {name: namespace[name] for name in names if name in namespace}
    name = values.pop("profile", "smoke")
    profile = load_profile(name, **values)
    data.dataset_folder(profile.dataset)
    warning = cpu_only_warning(profile)
    if warning:
        warnings.warn(warning, stacklevel=2)
    return profile
