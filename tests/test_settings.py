"""The paper's settings: which profile is which, what each executes and computes, and how a
main book shows its companions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from ntkbook import book, companions, config, jobs, report, settings
from ntkbook.config import ProfileError, load_profile

EVERY = book.notebooks()


def names(documents: list[str]) -> list[str]:
    return [Path(d).name for d in documents]


def test_a_profile_belongs_to_the_setting_of_its_dataset_and_radius():
    assert settings.of(load_profile("smoke")) == settings.MAIN
    assert settings.of(load_profile("smoke-cifar100")) == settings.CIFAR100
    assert settings.of(load_profile("smoke-eps8")) == settings.EPS8
    assert settings.of(load_profile("paper-eps8")) == settings.EPS8
    assert settings.of(load_profile("smoke", eps_255=8)) == settings.EPS8
    odd = settings.of(load_profile("smoke-cifar100", eps_255=8))  # not a setting of the paper
    assert odd.pages is None and odd.title == "CIFAR100, eps = 8/255"


def test_each_setting_executes_its_pages_only():
    main = names(settings.pages(load_profile("smoke"), EVERY))
    assert settings.SECTION9 not in main and len(main) == len(EVERY) - 1
    assert names(settings.pages(load_profile("smoke-cifar100"), EVERY)) == [
        "claims", "protocol", "kernel_evolution", "linearized_training", "transferability"]
    assert names(settings.pages(load_profile("smoke-eps8"), EVERY)) == [
        "claims", "protocol", settings.SECTION9]
    assert settings.shows(load_profile("smoke-eps8"), "frozen_kernel_adversarial_training")
    assert not settings.shows(load_profile("smoke-eps8"), "transferability")
    assert not settings.shows(load_profile("smoke"), settings.SECTION9)


def test_a_companion_plan_has_only_what_its_pages_need():
    main, cifar100, eps8 = (jobs.plan(load_profile(p))
                            for p in ("smoke", "smoke-cifar100", "smoke-eps8"))
    assert any(j.command == "audit" for j in main)
    assert not any(j.command == "audit" for j in cifar100 + eps8)
    sgd = [j for j in main if j.network and j.network.dynamics == "centered_standard"]
    assert sgd and not any(j.network and j.network.dynamics == "centered_standard"
                           for j in cifar100)
    assert any(j.network and j.network.dynamics == "centered_standard" for j in eps8)


def test_the_eps8_twin_is_the_same_profile_at_eps4():
    eps8 = load_profile("smoke-eps8")
    twin = settings.main_twin(eps8)
    assert twin.eps_255 == 4 and settings.of(twin) == settings.MAIN
    smoke = load_profile("smoke")
    assert {k: v for k, v in twin.as_dict().items() if k != "profile"} == \
        {k: v for k, v in smoke.as_dict().items() if k != "profile"}


def test_companions_are_found_by_name_and_checked(tmp_path, monkeypatch):
    assert settings.companions("smoke") == {settings.CIFAR100: "smoke-cifar100",
                                            settings.EPS8: "smoke-eps8"}
    assert settings.companions("smoke-eps8") == {}  # a companion has none
    assert settings.companions("gpu") == {}
    for name in ("smoke", "smoke-eps8"):
        shutil.copy(config.PARAMETERS_DIR / f"{name}.yaml", tmp_path)
    (tmp_path / "smoke-cifar100.yaml").write_text(
        (config.PARAMETERS_DIR / "smoke.yaml").read_text().replace("profile: smoke",
                                                                   "profile: smoke-cifar100"))
    monkeypatch.setattr(config, "PARAMETERS_DIR", tmp_path)
    with pytest.raises(ProfileError, match=r"smoke-cifar100.yaml: a CIFAR-100 companion must "
                                           r"have dataset cifar100"):
        settings.companions("smoke")


def test_a_page_of_another_setting_stops_at_once():
    settings.require(load_profile("smoke-eps8"), settings.EPS8)
    with pytest.raises(ProfileError, match="the eps = 8/255 setting's .* profile smoke-eps8"):
        settings.require(load_profile("smoke"), settings.EPS8)


# --- a main book with its companions ------------------------------------------------------

def executed_page(title: str, glued: str, claim_key: str) -> nbformat.NotebookNode:
    """An executed page as a build leaves it: a title, a hidden parameters cell, a heading,
    a glued value referred to in Markdown, and a claims table."""
    glue = nbformat.v4.new_output("display_data", data={
        "application/papermill.record/text/plain": repr(glued)}, metadata={
        "scrapbook": {"name": "claims_summary", "mime_prefix": "application/papermill.record/"}})
    claims = nbformat.v4.new_output("execute_result", data={"text/markdown": "| table |"},
                                    metadata={report.CLAIMS_KEY: [{"key": claim_key}]})
    table = nbformat.v4.new_code_cell("table", outputs=[glue, claims])
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(f"# {title} (section 3, Figure 1)\n\nIntro."),
        nbformat.v4.new_code_cell('profile = "x"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell("## The claims"), table,
        nbformat.v4.new_markdown_cell("At this profile, {glue:text}`claims_summary`.")])


@pytest.fixture
def published(tmp_path, monkeypatch):
    """results/ with a published smoke-cifar100 kernel page; a staged smoke book."""
    results = tmp_path / "results"
    (results / "smoke-cifar100").mkdir(parents=True)
    nbformat.write(executed_page("How the kernel evolves", "of 2 claims, 1 holds", "c100"),
                   results / "smoke-cifar100" / "kernel_evolution.ipynb")
    run = {"profile": "smoke-cifar100", "finished": "2026-12-07T10:00:00+0000",
           "total_wall_seconds": 600.0,
           "machine": {"cpu": "a CPU", "cores": 2, "gpus": []}, "sources": {}}
    (results / "smoke-cifar100" / "run.json").write_text(json.dumps(run))
    monkeypatch.setattr(book, "RESULTS", results)
    staging = tmp_path / "staging"
    (staging / "book").mkdir(parents=True)
    for page in ("kernel_evolution", "linearized_training", "transferability", "claims",
                 settings.SECTION9):
        nbformat.write(executed_page(page, "of 8 claims, 3 hold", "main"),
                       staging / "book" / f"{page}.ipynb")
    return staging


def test_a_main_page_shows_its_companion_row_after_its_own(published):
    origins = companions.compose(published, "smoke", builds=None)
    assert set(origins) == {"smoke-cifar100", "smoke-eps8"}
    page = nbformat.read(published / "book" / "kernel_evolution.ipynb", 4)
    added = [c for c in page.cells if c.metadata.get("ntkbook", {}).get("companion")]
    assert added[0].source.startswith("## CIFAR-100: How the kernel evolves\n")
    assert "Profile `smoke-cifar100`" in added[0].source and "2026-12-07" in added[0].source
    text = "\n".join(c.source for c in added if c.cell_type == "markdown")
    assert "### The claims" in text and "\n## The claims" not in text  # one level down
    assert "of 2 claims, 1 holds" in text and "{glue" not in text  # the companion's value
    outputs = [o for c in added if c.cell_type == "code" for o in c.outputs]
    assert outputs and all(report.CLAIMS_KEY not in o.get("metadata", {}) and
                           "scrapbook" not in o.get("metadata", {}) for o in outputs)
    own = [c for c in page.cells if c not in added]
    assert len(own) == 5 and "{glue:text}`claims_summary`" in own[-1].source  # untouched


def test_composing_again_replaces_and_publishing_leaves_the_companions_out(published):
    companions.compose(published, "smoke", builds=None)
    companions.compose(published, "smoke", builds=None)
    page = nbformat.read(published / "book" / "kernel_evolution.ipynb", 4)
    headings = [c.source for c in page.cells if c.source.startswith("## CIFAR-100")]
    assert len(headings) == 1
    assert len(companions.without_companions(page).cells) == 5


def test_a_missing_companion_is_named_with_the_command_that_makes_it(published):
    companions.compose(published, "smoke", builds=None)
    row = nbformat.read(published / "book" / "linearized_training.ipynb", 4).cells[-1]
    assert row.source.startswith("## CIFAR-100: linearized_training")
    assert "not published yet: `ntkbook build --profile smoke-cifar100` then `ntkbook " \
           "publish --profile smoke-cifar100` makes it" in row.source
    section9 = nbformat.read(published / "book" / f"{settings.SECTION9}.ipynb", 4)
    title = nbformat.read(book.ROOT / "book" / f"{settings.SECTION9}.ipynb", 4).cells[0]
    assert section9.cells[0].source.startswith(title.source.splitlines()[0])
    assert "eps = 8/255 setting's (profile `smoke-eps8`)" in section9.cells[0].source
    assert len(section9.cells) == 1


def test_the_eps8_cost_counts_the_eps4_runs_it_compares_with_and_no_audit():
    from ntkbook import costs
    smoke, eps8 = (costs.forward_units(load_profile(p)) for p in ("smoke", "smoke-eps8"))
    adversarial = costs.forward_units(load_profile("smoke", modes=["adversarial"]))["stage 1"]
    assert eps8["stage 1"] == pytest.approx(smoke["stage 1"] + adversarial)
    assert smoke["audit"] > 0 and smoke["eigen images"] > 0
    assert eps8["audit"] == eps8["eigen images"] == 0


def test_plan_with_all_settings_lists_every_setting_s_jobs(capsys):
    from ntkbook import cli
    assert cli.main(["plan", "--profile", "smoke", "--all-settings"]) == 0
    lines = capsys.readouterr().out.splitlines()
    profiles = {line.split("--profile ")[1].split()[0] for line in lines}
    assert profiles == {"smoke", "smoke-cifar100", "smoke-eps8"}
    assert len(lines) == sum(len(jobs.plan(load_profile(p))) for p in profiles)
    assert cli.main(["plan", "--profile", "smoke"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(jobs.plan(load_profile("smoke")))


def test_all_settings_goes_with_a_whole_build_only():
    for kwargs in ({"only": ["protocol"]}, {"from_results": True}):
        with pytest.raises(book.BookError, match="--all-settings builds every setting"):
            book.build("smoke", all_settings=True, **kwargs)


def test_a_page_shows_every_companion_that_appends_to_it(published):
    companions.compose(published, "smoke", builds=None)
    companions.compose(published, "smoke", builds=None)
    page = nbformat.read(published / "book" / "claims.ipynb", 4)
    headings = [c.source.split("\n")[0] for c in page.cells
                if c.metadata.get("ntkbook", {}).get("companion")]
    assert [h.split(":")[0] for h in headings] == ["## CIFAR-100", "## eps = 8/255"]
