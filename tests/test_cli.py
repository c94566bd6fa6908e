import shlex

import pytest

from ntkbook import cli, config, paper, report


def test_paper_plan_splits_into_independent_jobs():
    cfg = config.load_profile("paper")
    jobs = list(cli.plan(cfg))
    stage1 = [j for j in jobs if " stage1 " in j]
    kernels = [j for j in jobs if " kernels " in j]
    stage2 = [j for j in jobs if " stage2 " in j]
    assert len(stage1) == len(kernels) == 3 * 3  # seeds x modes
    section4 = 2 * len(cfg.spawn_epochs) * 2  # modes x t x dynamics
    table1 = 2 * 3 - 1  # (centering, SGD at 2 rates) x 2 BN modes; frozen centering is in 4
    table2 = 3  # adversarial stage 2 on K_0, K_T benign, K_T adversarial (benign ones in 4)
    assert len(stage2) == 3 * (section4 + table1 + table2)
    assert sum("--lr 0.0001 --update-bn" in j for j in stage2) == 3
    assert sum("--adversarial" in j for j in stage2) == 3 * 3
    assert len(set(jobs)) == len(jobs)
    assert jobs.index(stage1[-1]) < jobs.index(stage2[0])
    for job in jobs:
        args = cli.parser().parse_args(shlex.split(job)[1:])  # every line is a valid command
        assert args.profile == "paper"


def test_bad_command_line_values_fail_before_compute(capsys):
    assert cli.main(["stage2", "--profile", "smoke", "--seed", "0", "--mode", "benign",
                     "--spawn-epoch", "4.5", "--dynamics", "centered"]) == 2
    assert "--spawn-epoch 4.5 is not a checkpoint epoch" in capsys.readouterr().err
    assert cli.main(["plan", "--profile", "nope"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["stage1", "--profile", "smoke", "--seed", "0", "--mode", "lazy"])


def test_mean_std_is_the_population_std_over_seeds():
    assert report.mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert report.pm([81.0, 82.0, 83.0]) == "82.00 ± 0.82"


def test_paper_numbers_follow_dataset_and_eps():
    assert paper.reported(config.load_profile("paper"), "adversarial_training_robust") == \
        "51.77 ± 0.80"
    assert paper.reported(config.load_profile("paper-eps8"),
                          "adversarial_training_robust") == "35.80 ± 0.76"
    assert paper.reported(config.load_profile("paper-eps8"),
                          "adversarial_training_clean") == "not reported"
