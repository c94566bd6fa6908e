"""Publish an executed build: ``results/<profile>/`` with the executed notebooks, ``run.json``
and a README of the paper's claims, readable without running anything.

``run.json`` holds the build's facts (profile and the SHA-256 of its file, finish time,
machine, versions, code, wall time per notebook, the source notebooks' hashes), the claims of
every page (collected from the notebooks' claims tables, :class:`ntkbook.report.ClaimsTable`)
and headline accuracies (means over seeds, %).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from ntkbook import book, experiment, provenance, report
from ntkbook.config import Profile, load_profile
from ntkbook.store import Store


def collect_claims(notebook: nbformat.NotebookNode, page: str) -> list[dict[str, str]]:
    """Every claim a notebook's claims tables output, with its page."""
    return [{"page": page, **claim}
            for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            for claim in output.get("metadata", {}).get(report.CLAIMS_KEY, [])]


def headline(cfg: Profile, store: Store) -> dict[str, float]:
    """Final clean accuracy of benign and adversarial stage 1 and adversarial PGD accuracy,
    means over seeds (%), from the cache the build filled."""
    def final(mode: str, key: str) -> float:
        return float(np.mean([experiment.evaluate_stage1(cfg, seed, mode, cfg.stage1_epochs,
                                                         store)[key] for seed in cfg.seeds]))

    out = {}
    if "benign" in cfg.modes:
        out["benign_final_clean"] = final("benign", "clean")
    if "adversarial" in cfg.modes:
        out["adversarial_final_clean"] = final("adversarial", "clean")
        out["adversarial_final_robust"] = final("adversarial", "robust")
    return {k: round(v, 2) for k, v in out.items()}


def readme(run: dict[str, Any], stale: list[str]) -> str:
    """``results/<profile>/README.md``: the run's facts and the claims across the book."""
    holding = sum(c["verdict"] == "holds" for c in run["claims"])
    machine = run["machine"]
    lines = [
        f"# Published run: profile `{run['profile']}`",
        "",
        f"{holding} of the paper's {len(run['claims'])} claims checked by the book hold at "
        f"this profile. The executed notebooks are in this folder; "
        f"`ntkbook build --profile {run['profile']} --from-results` renders them as HTML "
        f"without executing anything.",
        "",
        "## The run",
        "",
        report.markdown_table(["", ""], [
            ("parameters", f"`parameters/{run['profile']}.yaml` (SHA-256 "
                           f"`{run['profile_sha256'][:16]}…`)"),
            ("code", f"`{run['code']}`"),
            ("finished", run["finished"]),
            ("machine", f"{machine['cpu']}, {machine['cores']} cores, "
                        f"{', '.join(machine['gpus']) or 'no GPU'}"),
            ("versions", ", ".join(f"{k} {v}" for k, v in run["versions"].items())),
            ("wall time", f"{run['total_wall_seconds'] / 60:.1f} min: " + ", ".join(
                f"{name} {seconds:.0f} s" for name, seconds in run["wall_seconds"].items())),
            ("headline (%)", ", ".join(f"{k} {v:.2f}" for k, v in run["headline"].items())),
        ]),
        "",
        "## The paper's claims at this profile",
        "",
        report.markdown_table(["page", "claim", "ours", "paper", "verdict"],
                              [(c["page"], c["claim"], c["ours"], c["paper"], c["verdict"])
                               for c in run["claims"]]),
        "",
    ]
    if stale:
        lines += ["## Stale pages", "",
                  "These notebooks changed after this run executed them; their outputs here are "
                  "from the older version: " + ", ".join(f"`book/{n}.ipynb`" for n in stale),
                  ""]
    return "\n".join(lines)


def publish(profile: str, store: Store | None = None, built: Path | None = None,
            results: Path | None = None) -> Path:
    """Copy the last complete build of ``profile`` (``_build/<profile>``) into
    ``results/<profile>/``; return that folder."""
    cfg = load_profile(profile)
    built = built or book.ROOT / "_build" / cfg.profile
    record_path = built / book.BUILD_RECORD
    if not record_path.is_file():
        raise book.BookError(f"no build of profile {cfg.profile} to publish: run "
                             f"`ntkbook build --profile {cfg.profile}` first")
    run = json.loads(record_path.read_text())
    if not run["complete"]:
        raise book.BookError(f"the last build of {cfg.profile} executed only some notebooks "
                             f"(--only); build the whole book before publishing")
    if run["profile_sha256"] != provenance.profile_sha256(profile):
        raise book.BookError(f"parameters/{cfg.profile}.yaml changed after the last build; "
                             f"build again before publishing")
    target = (results or book.RESULTS) / cfg.profile
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    claims = []
    for document in book.notebooks():
        name = Path(document).name
        executed = built / "source" / f"{document}.ipynb"
        shutil.copy(executed, target / f"{name}.ipynb")
        claims += collect_claims(nbformat.read(executed, as_version=4), name)
    run.update(claims=claims, headline=headline(cfg, store or Store()))
    (target / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    (target / "README.md").write_text(readme(run, provenance.stale_notebooks(run)))
    return target
