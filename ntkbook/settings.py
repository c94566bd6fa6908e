"""The paper's settings: CIFAR-10 at eps = 4/255 (the main text), CIFAR-100 (the top rows of
Figures 1-3) and eps = 8/255 (section 9, Figure 5, appendices C-D).

A setting is a (dataset, eps) pair; a profile belongs to the setting of its ``dataset`` and
``eps_255``. Each setting is its own unit of work: its profile trains, caches and publishes
only the pages the setting has (:attr:`Setting.pages`). A profile of the main setting named
``P`` has companions ``P-cifar100`` and ``P-eps8`` (files in ``parameters/``, where they
exist); its book shows their executed pages beside its own (:mod:`ntkbook.companions`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ntkbook import config
from ntkbook.config import Profile, ProfileError


@dataclasses.dataclass(frozen=True)
class Setting:
    """One of the paper's settings and the book pages it has."""

    name: str  # the suffix of a companion profile's name ("" for the main setting)
    dataset: str
    eps_255: float
    title: str  # in headings: "CIFAR-100"
    pages: tuple[str, ...] | None  # the pages its profile executes (None: the main book's)
    appended_to: tuple[str, ...] = ()  # main pages that show this setting's copy after theirs
    own: tuple[str, ...] = ()  # pages only this setting executes; the main book shows its copy
    claims_of: tuple[str, ...] | None = None  # pages whose claims it decides (None: its pages)


MAIN = Setting("", "cifar10", 4, "CIFAR-10, eps = 4/255", None)
CIFAR100 = Setting("cifar100", "cifar100", 4, "CIFAR-100",
                   ("protocol", "kernel_evolution", "linearized_training", "transferability",
                    "claims"),
                   appended_to=("kernel_evolution", "linearized_training", "transferability",
                                "claims"))
SECTION9 = "higher_eps"  # the page of section 9: Figure 5 and Tables 1-2 at eps = 8/255
EPS8 = Setting("eps8", "cifar10", 8, "eps = 8/255", ("protocol", SECTION9, "claims"),
               appended_to=("claims",), own=(SECTION9,),
               claims_of=("protocol", "kernel_evolution", "linearized_training",
                          "sgd_vs_linearized", "frozen_kernel_adversarial_training", SECTION9))
SETTINGS = (MAIN, CIFAR100, EPS8)
COMPANIONS = (CIFAR100, EPS8)


def of(cfg: Profile) -> Setting:
    """The setting of a profile; one the paper does not have (CIFAR-100 at eps 8, say) runs
    the main book's pages."""
    return next((s for s in SETTINGS if (s.dataset, s.eps_255) == (cfg.dataset, cfg.eps_255)),
                dataclasses.replace(MAIN, title=f"{cfg.dataset.upper()}, eps = "
                                                f"{cfg.eps_255:g}/255"))


def own_pages() -> set[str]:
    """Pages that only a companion setting executes."""
    return {page for s in COMPANIONS for page in s.own}


def pages(cfg: Profile, every: list[str]) -> list[str]:
    """The documents of ``every`` (the book's, in order) that ``cfg``'s setting executes."""
    setting = of(cfg)
    if setting.pages is None:
        return [d for d in every if Path(d).name not in own_pages()]
    return [d for d in every if Path(d).name in setting.pages]


def shows(cfg: Profile, page: str) -> bool:
    """Whether the profile's setting shows what ``page`` computes and decides its claims
    (the eps = 8/255 setting shows sections 3-7 on its section 9 page); its jobs compute
    only what the pages it shows need."""
    setting = of(cfg)
    if setting.pages is None:
        return page not in own_pages()
    return page in (setting.claims_of or setting.pages)


def require(cfg: Profile, setting: Setting) -> None:
    """Stop a page of ``setting`` executed under a profile of another setting."""
    if of(cfg) != setting:
        raise ProfileError(f"parameter 'profile': this page is the {setting.title} setting's "
                           f"(dataset {setting.dataset}, eps_255 {setting.eps_255:g}); profile "
                           f"{cfg.label} has dataset {cfg.dataset} and eps_255 "
                           f"{cfg.eps_255:g} (e.g. profile smoke-{setting.name})")


def companions(profile: str) -> dict[Setting, str]:
    """``{setting: profile name}`` of the companions of a main-setting profile that exist in
    ``parameters/`` (none for a profile given as a path, or of another setting)."""
    if Path(profile).suffix in (".yaml", ".yml") or of(config.load_profile(profile)) != MAIN:
        return {}
    found = {}
    for setting in COMPANIONS:
        name = f"{profile}-{setting.name}"
        if (config.PARAMETERS_DIR / f"{name}.yaml").is_file():
            cfg = config.load_profile(name)
            if of(cfg) != setting:
                raise ProfileError(f"parameters/{name}.yaml: a {setting.title} companion must "
                                   f"have dataset {setting.dataset} and eps_255 "
                                   f"{setting.eps_255:g}, not {cfg.dataset} and "
                                   f"{cfg.eps_255:g}")
            found[setting] = name
    return found


def main_twin(cfg: Profile) -> Profile:
    """``cfg`` at the main setting's eps (everything else equal): what section 9 compares
    eps = 8/255 with. Benign runs are the same runs (their cache entries do not hold eps)."""
    return config.from_mapping({"eps_255": MAIN.eps_255}, base=cfg)
