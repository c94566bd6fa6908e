"""Shared fixtures: a tiny profile on the real CIFAR sample, and a private store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ntkbook import config
from ntkbook.store import Store

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "NTKBOOK_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["NTKBOOK_DATA_DIR"] = str(SHARED_DATA)

TINY = dict(width=4, n_train=100, n_test=50, n_kernel=20, batch_size=25, eval_batch_size=50,
            seeds=[0], stage1_epochs=3, flip_epoch=1, fractional_epochs=[0.5],
            train_pgd_steps=2, eval_pgd_steps=3, spawn_epochs=[0, 1, 3], stage2_epochs=1,
            audit_images=20, audit_steps=3, audit_restarts=2, audit_targets=2, audit_queries=20)


@pytest.fixture
def tiny() -> config.Profile:
    """A profile small enough to train in seconds: width-4 CNN, 100 images, 3 epochs."""
    return config.load_profile("smoke", **TINY)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node SLURM on localhost (munge, slurmctld, slurmd), for the session;
    yields its partition. Needs root and Debian's slurm-wlm and munge (.ci/run installs them)."""
    import shutil
    import socket
    import subprocess
    import time

    folder = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname()
    started = []
    if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode:
        key = Path("/etc/munge/munge.key")
        for d in ("/etc/munge", "/var/log/munge", "/run/munge", "/var/lib/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        if not key.is_file():
            key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
        started.append(Path("/run/munge/munged.pid"))
    for d in ("state", "spool"):
        (folder / d).mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(f"""ClusterName=ntkbook
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
NodeName={host} CPUs=2 RealMemory=4000 State=UNKNOWN
PartitionName=ntkbook Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    subprocess.run(["slurmctld", "-f", str(conf)], check=True)
    subprocess.run(["slurmd", "-f", str(conf)], check=True)
    started += [folder / "slurmd.pid", folder / "slurmctld.pid"]
    deadline = time.time() + 30
    while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True,
                                       text=True).stdout:
        assert time.time() < deadline, (folder / "slurmctld.log").read_text()[-2000:]
        time.sleep(0.5)
    yield "ntkbook"
    for pid_file in started:
        if pid_file.is_file():
            os.kill(int(pid_file.read_text().split()[0]), 15)
    if previous is None:
        os.environ.pop("SLURM_CONF")
    else:
        os.environ["SLURM_CONF"] = previous
