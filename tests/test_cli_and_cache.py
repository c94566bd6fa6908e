"""The command line speaks for itself; the cache can be listed, verified and cleaned."""

import argparse
import os
import re
import shlex
import subprocess
import sys
import time

import matplotlib
import numpy as np

from ntkbook import cli, config, dynamics, experiment, housekeeping, jobs, plots
from ntkbook.store import Store
from tests.conftest import TINY

matplotlib.use("Agg")


def all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)


def test_every_command_and_option_has_help():
    main = cli.parser()
    text = main.format_help()
    for command in ("build", "plan", "stage1", "kernels", "stage2", "audit", "grid", "cache",
                    "publish"):
        assert re.search(rf"^\s+{command}\s+\S", text, re.M), command  # listed with its help
    for parser in all_parsers(main):
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (parser.prog, action.option_strings)


def test_help_is_plain_text():
    for parser in all_parsers(cli.parser()):
        text = parser.format_help()
        assert not re.search(r"``|:(func|class|mod|meth|data|attr):`|::\n", text), parser.prog


def test_help_answers_at_once_without_importing_jax():
    script = ("import sys, ntkbook.cli; print(sorted(m for m in ('jax', 'flax', 'papermill', "
              "'nbformat', 'submitit', 'pooch') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True).stdout
    assert loaded.strip() == "[]"
    for command in ([], ["build"]):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "ntkbook", *command, "--help"],
                                capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        assert seconds < 2.0, (command, seconds)
        assert result.stdout.startswith("usage: ntkbook")


def test_the_compilation_cache_is_on_once_jax_programs_can_be_compiled(tmp_path):
    script = "import ntkbook.models, jax; print(jax.config.jax_compilation_cache_dir)"
    env = {**os.environ, "NTKBOOK_CACHE_DIR": str(tmp_path)}
    env.pop("NTKBOOK_XLA_CACHE_DIR", None)
    env.pop("NTKBOOK_XLA_CACHE", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert out.strip() == str(tmp_path / ".xla")


def test_the_command_lines_names_match_the_library():
    assert cli.STAGE2_DYNAMICS == dynamics.DYNAMICS[1:]
    assert tuple(cli.JOB_COMMANDS) == jobs.COMMANDS


def test_the_docstring_examples_are_valid_commands():
    examples = re.findall(r"^\s+(ntkbook .*?)(?:\s+#.*)?$", cli.__doc__.replace("\\\n", " "),
                          re.M)
    assert len(examples) >= 6
    for example in examples:
        cli.parser().parse_args(shlex.split(example)[1:])


def test_clean_and_pgd_line_styles_are_in_the_legend():
    cfg = config.load_profile("smoke")
    curves = {"benign": np.ones((2, 3, 2)), "adversarial": np.ones((2, 3, 2))}
    legend = plots.stage1_accuracy(cfg, [0, 1, 2], curves).axes[0].get_legend()
    styles = {t.get_text(): h.get_linestyle() for t, h in zip(legend.get_texts(),
                                                              legend.legend_handles, strict=True)}
    assert styles["clean"] == "-" and styles["PGD"] == "--"


def test_the_command_line_does_not_print_backend_noise():
    script = ("from ntkbook import cli; cli.configure_logging(); import jax; jax.devices(); "
              "import logging; logging.getLogger('ntkbook').info('kept')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "Unable to initialize backend" not in result.stderr
    assert "kept" in result.stderr


def test_cache_ls_verify_and_gc(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NTKBOOK_CACHE_DIR", str(tmp_path / "cache"))
    cfg = config.load_profile("smoke", **TINY)
    store = Store()
    experiment.evaluate_stage1(cfg, 0, "benign", 1, store)
    other = config.load_profile("smoke", **{**TINY, "width": 2})
    experiment.evaluate_stage1(other, 0, "benign", 1, store)
    kinds = {kind: n for kind, n, _ in housekeeping.listing(store)}
    assert kinds["evaluation"] == 2 and kinds["checkpoint"] == 6

    victim = next((store.root / "evaluation").iterdir())
    victim.write_bytes(victim.read_bytes()[:-3] + b"xyz")
    checked, corrupt = housekeeping.verify(store)
    assert checked == sum(kinds.values()) and [p for p, _ in corrupt] == [victim]
    assert not victim.exists()

    before = set(store.entries())
    unused = housekeeping.unused(store, [cfg])
    assert unused and all(str(p).endswith(".entry") for p in unused)
    assert all(p.exists() for p in unused)  # listing removes nothing
    kept = before - set(unused)
    run = experiment.stage1_run(cfg, 0, "benign")
    assert store.path(run.checkpoint(1)) in kept
    assert store.path(experiment.stage1_run(other, 0, "benign").checkpoint(1)) in unused
    path = tmp_path / "keep.yaml"
    path.write_text("\n".join(f"{k}: {v}" for k, v in cfg.as_dict().items()))
    assert cli.main(["cache", "gc", "--keep-profile", str(path)]) == 0
    assert "would remove" in capsys.readouterr().out
    assert set(store.entries()) == before
    assert cli.main(["cache", "gc", "--keep-profile", str(path), "--delete"]) == 0
    assert set(store.entries()) == kept
    assert cli.main(["cache", "ls"]) == 0 and "checkpoint" in capsys.readouterr().out
    assert os.environ["NTKBOOK_CACHE_DIR"] in str(store.root)
