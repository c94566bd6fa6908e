import shlex

import pytest

from ntkbook import cli, config, jobs, paper, report, robustness


def test_paper_plan_splits_into_independent_jobs(capsys):
    cfg = config.load_profile("paper")
    assert cli.main(["plan", "--profile", "paper"]) == 0  # needs no data: paper-scale is absent
    lines = capsys.readouterr().out.splitlines()
    stage1 = [j for j in lines if " stage1 " in j]
    kernels = [j for j in lines if " kernels " in j]
    stage2 = [j for j in lines if " stage2 " in j]
    audits = [j for j in lines if " audit " in j]
    assert len(stage1) == len(kernels) == 3 * 3  # seeds x modes
    section4 = 2 * len(cfg.spawn_epochs) * 2  # modes x t x dynamics
    table1 = 2 * 3 - 1  # (centering, SGD at 2 rates) x 2 BN modes; frozen centering is in 4
    table2 = 3  # adversarial stage 2 on K_0, K_T benign, K_T adversarial (benign ones in 4)
    assert len(stage2) == 3 * (section4 + table1 + table2)  # the audited networks are among them
    assert len(audits) == 3  # one per seed
    assert sum("--lr 0.0001 --update-bn" in j for j in stage2) == 3
    assert sum("--adversarial" in j for j in stage2) == 3 * 3
    assert len(set(lines)) == len(lines) == len(jobs.plan(cfg))
    assert lines.index(stage1[-1]) < lines.index(stage2[0]) < lines.index(audits[0])
    for line in lines:
        args = cli.parser().parse_args(shlex.split(line)[1:])  # every line is a valid command
        assert args.profile == "paper"


def test_jobs_depend_on_their_stage1_run_and_audits_on_their_seed():
    cfg = config.load_profile("paper")
    plan = jobs.plan(cfg)
    stage2 = next(j for j in plan if j.command == "stage2" and j.mode == "benign")
    assert jobs.dependencies(cfg, stage2, plan) == [jobs.Job("stage1", stage2.seed, "benign")]
    audit = next(j for j in plan if j.command == "audit")
    needed = jobs.dependencies(cfg, audit, plan)
    assert {j.seed for j in needed} == {audit.seed}
    assert {j.command for j in needed} == {"stage1", "stage2"}
    attacked = {jobs._normalised(cfg, nid) for pair in
                robustness.audited_networks(cfg, audit.seed).values() for nid in pair
                if nid.stage == 2}
    assert attacked <= {j.network for j in needed}
    later = plan[plan.index(audit) + 1:]  # the next seed's stage 2 runs beside this audit
    assert max(map(plan.index, needed)) < plan.index(audit)
    assert any(j.command == "stage2" and j.seed != audit.seed for j in later)
    assert any(j.command == "stage2" and j.seed == audit.seed and j not in needed
               for j in plan)  # not every stage-2 job of the seed holds it back


def test_bad_command_line_values_fail_before_compute(capsys):
    assert cli.main(["stage2", "--profile", "smoke", "--seed", "0", "--mode", "benign",
                     "--spawn-epoch", "4.5", "--dynamics", "centered"]) == 2
    assert "--spawn-epoch 4.5 is not a checkpoint epoch" in capsys.readouterr().err
    assert cli.main(["plan", "--profile", "nope"]) == 2
    assert cli.main(["plan", "--profile", "smok"]) == 2
    assert "unknown profile 'smok' (did you mean 'smoke'?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["stage1", "--profile", "smoke", "--seed", "0", "--mode", "lazy"])


def test_mean_std_is_the_sample_std_over_seeds():
    assert report.mean_std([1.0, 3.0]) == (2.0, 2 ** 0.5)
    assert report.pm([81.0, 82.0, 83.0]) == "82.00 ± 1.00"
    assert report.mean_std([5.0]) == (5.0, 0.0)


def test_paper_numbers_follow_dataset_and_eps():
    assert paper.reported(config.load_profile("paper"), "adversarial_training_robust") == \
        "51.77 ± 0.80"
    assert paper.reported(config.load_profile("paper-eps8"),
                          "adversarial_training_robust") == "35.80 ± 0.76"
    assert paper.reported(config.load_profile("paper-eps8"),
                          "adversarial_training_clean") == "not reported"
