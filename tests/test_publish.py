"""Publishing a build: results/<profile>/ with run.json, the claims of every page, staleness."""

import json
import re

import nbformat
import numpy as np
import pytest

from ntkbook import book, claims, config, provenance, publish, report
from ntkbook.store import Store
from tests.conftest import TINY

RANK = next(c for c in claims.REGISTRY if c.key == "adversarial_kernel_higher_rank")
CLAIM = claims.decide(RANK, [claims.paired(np.array([6.1, 6.3, 6.2]), np.array([5.5, 5.6, 5.4]),
                                           "greater", 2)]).as_dict()


def fake_build(tmp_path, cfg, sources):
    """A build folder whose executed notebooks are the sources, one with a claims table."""
    built = tmp_path / "build"
    for document in book.notebooks():
        target = built / "source" / f"{document}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        notebook = nbformat.read(book.ROOT / f"{document}.ipynb", as_version=4)
        if document.endswith("protocol"):
            cell = notebook.cells[-2]
            data, metadata = report.ClaimsTable([CLAIM])._repr_mimebundle_()
            cell.outputs = [nbformat.v4.new_output("display_data", data=data,
                                                   metadata=metadata)]
        nbformat.write(notebook, target)
    record = provenance.record(cfg, "smoke", 0.0, {"protocol": 1.5}, sources, complete=True)
    (built / book.BUILD_RECORD).write_text(json.dumps(record))
    return built


def test_publish_writes_run_json_with_claims_headline_and_run_facts(tmp_path, monkeypatch):
    cfg = config.load_profile("smoke")
    sources = {name: book.file_sha256(book.ROOT / "book" / f"{name}.ipynb")
               for name in (d.split("/")[-1] for d in book.notebooks())}
    built = fake_build(tmp_path, cfg, sources)
    monkeypatch.setattr(publish, "headline", lambda cfg, store: {"benign_final_clean": 1.0})
    target = publish.publish("smoke", store=Store(tmp_path / "cache"), built=built,
                             results=tmp_path / "results")
    run = json.loads((target / "run.json").read_text())
    for key in ("profile", "profile_sha256", "finished", "machine", "versions", "wall_seconds",
                "claims", "headline"):
        assert key in run, key
    assert run["profile_sha256"] == provenance.profile_sha256("smoke")
    assert run["claims"] == [CLAIM]  # each claim names its own page
    assert run["claims"][0]["verdict"] == "holds" and run["claims"][0]["low"] > 0
    assert set(run["versions"]) >= {"python", "jax", "jaxlib", "flax", "optax"}
    assert {p.stem for p in target.glob("*.ipynb")} == set(sources)
    text = (target / "README.md").read_text()
    assert text.index("of 1 claims, 1 holds") < text.index("## The run")  # verdicts first
    assert f"| kernel_evolution | {CLAIM['claim']} ({CLAIM['section']}) | 6.20 vs 5.50 |" in text
    assert "+0.70 [" in text and "**holds**" in text
    assert "Stale" not in text


def test_a_notebook_changed_after_the_run_is_listed_as_stale(tmp_path, monkeypatch, caplog):
    cfg = config.load_profile("smoke")
    sources = {name: "0" * 64 if name == "transferability" else
               book.file_sha256(book.ROOT / "book" / f"{name}.ipynb")
               for name in (d.split("/")[-1] for d in book.notebooks())}
    built = fake_build(tmp_path, cfg, sources)
    monkeypatch.setattr(publish, "headline", lambda cfg, store: {})
    target = publish.publish("smoke", store=Store(tmp_path / "cache"), built=built,
                             results=tmp_path / "results")
    assert "`book/transferability.ipynb`" in (target / "README.md").read_text().split(
        "## Stale pages")[1]
    run = json.loads((target / "run.json").read_text())
    assert provenance.stale_notebooks(run) == ["transferability"]


def test_publishing_refuses_a_build_of_other_parameters(tmp_path):
    cfg = config.load_profile("smoke", **TINY)
    built = fake_build(tmp_path, cfg, {})
    record = json.loads((built / book.BUILD_RECORD).read_text())
    (built / book.BUILD_RECORD).write_text(json.dumps({**record, "profile_sha256": "0" * 64}))
    with pytest.raises(book.BookError, match="changed after the last build"):
        publish.publish("smoke", built=built, results=tmp_path / "results")


@pytest.mark.parametrize("run_json", sorted(book.RESULTS.glob("*/run.json")),
                         ids=lambda p: p.parent.name)
def test_a_published_run_matches_its_parameters_file(run_json):
    run = json.loads(run_json.read_text())
    assert run["profile_sha256"] == provenance.profile_sha256(run["profile"]), (
        f"parameters/{run['profile']}.yaml changed after {run_json.parent} was published: "
        f"rebuild and publish it again")
    assert len(run["claims"]) >= 12 and run["wall_seconds"]


def test_the_cpu_run_is_published():
    assert (book.RESULTS / "cpu" / "run.json").is_file()


@pytest.mark.parametrize("run_json", sorted(book.RESULTS.glob("*/run.json")),
                         ids=lambda p: p.parent.name)
def test_the_readme_says_of_a_published_run_what_its_run_json_says(run_json):
    run = json.loads(run_json.read_text())
    start, end = publish.markers(run["profile"])
    readme = publish.README.read_text()
    assert f"{start}\n{publish.summary(run)}\n{end}" in readme, (
        "README.md's summary of the run is stale: run `ntkbook publish`")
    outside = readme.split(start)[0] + readme.split(end)[1]
    intro = (book.ROOT / "book" / "intro.md").read_text()
    typed = [f"{run['total_wall_seconds'] / 60:.0f} minutes",
             f"{run['total_wall_seconds'] / 60:.1f} min",
             *(f"{value:.1f} %" for value in run["headline"].values())]
    for text, where in ((outside, "README.md"), (intro, "book/intro.md")):
        for number in typed:
            assert number not in text, f"{where} types {number!r} by hand: take it from the run"
    assert f"{{{{ published_{run['profile'].replace('-', '_')} }}}}" in intro or \
        run["profile"] != "cpu"
    assert re.search(r"\d+ minutes on \d+ cores", book.published_runs()[
        f"published_{run['profile'].replace('-', '_')}"])


def test_the_published_readme_is_generated_from_run_json(tmp_path):
    target = tmp_path / "cpu"
    target.mkdir()
    run = {"profile": "cpu", "claims": [{**CLAIM, "page": "p"}], "machine": {
        "cpu": "X", "cores": 2, "gpus": []}, "total_wall_seconds": 600.0,
        "finished": "2026-12-06T00:00:00", "code": "abc", "headline": {"x": 1.0},
        "profile_sha256": "0" * 64, "versions": {}, "wall_seconds": {}}
    (target / "run.json").write_text(json.dumps(run))
    publish.rewrite_readmes("cpu", results=tmp_path)
    assert (target / "README.md").read_text() == publish.readme(run, [])
    assert "1 holds, 0 does not hold, 0 inconclusive" in publish.summary(run)
