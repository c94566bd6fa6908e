"""Publish an executed build: ``results/<profile>/`` with the executed notebooks, ``run.json``
and a README of the paper's claims, readable without running anything; and the repository
README's paragraph on the run (between markers), so that no number of a run is typed by hand.

``run.json`` holds the build's facts (profile and the SHA-256 of its file, finish time,
machine, versions, code, wall time per notebook, the source notebooks' hashes), the claims of
every page (collected from the notebooks' claims tables, :class:`ntkbook.report.ClaimsTable`,
as :mod:`ntkbook.claims` decided them)
and headline accuracies (means over seeds, %).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from ntkbook import book, companions, experiment, provenance, report, settings
from ntkbook.config import Profile, load_profile
from ntkbook.standalone import page_titles, readable
from ntkbook.store import Store


def collect_claims(notebook: nbformat.NotebookNode, page: str) -> list[dict[str, str]]:
    """Every claim a notebook's claims tables output, with its page."""
    return [{"page": page, **claim}  # a claim names its own page; older runs did not
            for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            for claim in output.get("metadata", {}).get(report.CLAIMS_KEY, [])]


def unique_claims(claims: list[dict[str, str]]) -> list[dict[str, str]]:
    """Each claim once, in order: a page may show another page's claims (section 9's page
    repeats the protocol's), and a claim names its own page."""
    unique: dict[tuple[str, str], dict[str, str]] = {}
    for claim in claims:
        unique.setdefault((claim["page"], claim["claim"]), claim)
    return list(unique.values())


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


HEADLINE_NAMES = {"benign_final_clean": "benign training, final clean accuracy",
                  "adversarial_final_clean": "adversarial training, final clean accuracy",
                  "adversarial_final_robust": "adversarial training, final PGD accuracy"}
README = book.ROOT / "README.md"


def calibrated(run: dict[str, Any]) -> bool:
    """Whether the run's claims were decided by :mod:`ntkbook.stats` (intervals kept)."""
    return all("estimate" in claim for claim in run["claims"])


def headline_text(run: dict[str, Any]) -> str:
    return "; ".join(f"{HEADLINE_NAMES.get(k, k)} {v:.1f} %" for k, v in run["headline"].items())


def verdict_text(run: dict[str, Any]) -> str:
    """What the run says of the paper's claims, in one sentence."""
    if calibrated(run):
        return (f"Decided by the book's calibrated rule (95 % intervals over "
                f"{len(run['claims'][0].get('per_seed', {}).get('a', [])) or 'the'} seeds), "
                f"{report.counts_text(run['claims'])}.")
    old = sum(c["verdict"] == "holds" for c in run["claims"])
    return (f"Its {len(run['claims'])} verdicts predate the book's calibrated rule: they "
            f"compared means over seeds, by which {old} claims held; most of those comparisons "
            f"are within noise, so they are not verdicts the book stands by. The run is redone "
            f"with the calibrated rule, intervals and per-seed values.")


def summary(run: dict[str, Any]) -> str:
    """The README's paragraph on a published run, generated from its ``run.json``."""
    machine = run["machine"]
    where = f"results/{run['profile']}/"
    return (f"**A published run you can read without running anything:** [`{where}`]"
            f"({where}README.md) holds every page executed under the `{run['profile']}` profile "
            f"on {machine['cpu']} ({machine['cores']} cores, "
            f"{', '.join(machine['gpus']) or 'no GPU'}) in "
            f"{run['total_wall_seconds'] / 60:.1f} minutes, finished {run['finished'][:10]} "
            f"(code `{run['code'][:7]}`). Headline: {headline_text(run)}. {verdict_text(run)} "
            f"`ntkbook build --profile {run['profile']} --from-results` renders it as HTML in "
            f"seconds, offline.")


def markers(profile: str) -> tuple[str, str]:
    return (f"<!-- published run {profile}: written by `ntkbook publish`, do not edit -->",
            f"<!-- end of published run {profile} -->")


def write_summary(run: dict[str, Any], path: Path = README) -> None:
    """Replace the text between the profile's markers in ``path`` with :func:`summary`; a
    profile published for the first time gets its block after the last run's."""
    start, end = markers(run["profile"])
    text = path.read_text()
    if start not in text or end not in text:
        ends = list(re.finditer(r"<!-- end of published run [^ ]+ -->\n", text))
        if not ends:
            raise book.BookError(f"{path} has no published-run block to put {start} after")
        at = ends[-1].end()
        text = text[:at] + f"{start}\n{end}\n" + text[at:]
    before, rest = text.split(start, 1)
    path.write_text(before + start + "\n" + summary(run) + "\n" + end + rest.split(end, 1)[1])


def readme(run: dict[str, Any], stale: list[str]) -> str:
    """``results/<profile>/README.md``: the claims across the book first, then the run."""
    machine = run["machine"]
    lines = [
        f"# Published run: profile `{run['profile']}`",
        "",
        verdict_text(run) + f" The executed notebooks are in this folder; "
        f"`ntkbook build --profile {run['profile']} --from-results` renders them as HTML "
        f"without executing anything.",
        "",
        "## The paper's claims at this profile",
        "",
    ]
    if calibrated(run):
        lines += [report.claims_markdown(run["claims"], page_column=True), ""]
    else:
        lines += [report.markdown_table(
            ["page", "claim", "ours", "paper", "old verdict (means compared)"],
            [(c["page"], c["claim"], c["ours"], c["paper"], c["verdict"])
             for c in run["claims"]]), ""]
    lines += [
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
            ("wall time", f"{run['total_wall_seconds'] / 60:.1f} min: " + (
                f"{run['method']}: jobs {run['jobs_seconds']:.0f} s, then "
                if "jobs_seconds" in run else "") + ", ".join(
                f"{name} {seconds:.0f} s" for name, seconds in run["wall_seconds"].items())),
            ("headline (%)", ", ".join(f"{k} {v:.2f}" for k, v in run["headline"].items())),
        ]),
        "",
    ]
    if stale:
        lines += ["## Stale pages", "",
                  "These notebooks changed after this run executed them; their outputs here are "
                  "from the older version: " + ", ".join(f"`book/{n}.ipynb`" for n in stale),
                  ""]
    return "\n".join(lines)


def rewrite_readmes(profile: str, results: Path | None = None) -> None:
    """Write ``results/<profile>/README.md`` and the README's summary from ``run.json``."""
    target = (results or book.RESULTS) / profile
    run = json.loads((target / "run.json").read_text())
    (target / "README.md").write_text(readme(run, provenance.stale_notebooks(run)))
    if results is None:
        write_summary(run)


# Published notebooks that read on their own (on a code-hosting site's notebook viewer, say):
# MyST roles resolved to text and links, one parameters cell, no builder paths or timings.


def refresh(profile: str, results: Path | None = None, root: Path | None = None) -> list[Path]:
    """Rewrite the published notebooks of ``results/<profile>/`` in place with
    :func:`readable` (for runs published before it existed; a no-op on readable ones)."""
    folder = (results or book.RESULTS) / profile
    paths = sorted(folder.glob("*.ipynb"))
    notebooks = {path.stem: nbformat.read(path, as_version=4) for path in paths}
    pages = page_titles(notebooks)
    for path in paths:
        nbformat.write(readable(notebooks[path.stem], path.stem, pages, root), path)
    return paths


def publish(profile: str, store: Store | None = None, built: Path | None = None,
            results: Path | None = None) -> Path:
    """Copy the last complete build of ``profile`` (``_build/<profile>``) into
    ``results/<profile>/``: the pages of its setting, each made :func:`readable`, without
    the companion settings' cells its book showed; return that folder."""
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
    executed = {Path(document).name: companions.without_companions(
        nbformat.read(built / "source" / f"{document}.ipynb", as_version=4))
        for document in settings.pages(cfg, book.notebooks())}
    pages = page_titles(executed)  # readable copies first: a raw role keeps the old run
    copies = {name: readable(notebook, name, pages) for name, notebook in executed.items()}
    target = (results or book.RESULTS) / cfg.profile
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    claims = []
    for name, notebook in executed.items():
        nbformat.write(copies[name], target / f"{name}.ipynb")
        claims += collect_claims(notebook, name)
    run.update(claims=unique_claims(claims), headline=headline(cfg, store or Store()))
    (target / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    rewrite_readmes(cfg.profile, results)
    return target
