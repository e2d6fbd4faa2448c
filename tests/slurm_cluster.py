"""A real one-node Slurm cluster for tests, started and stopped with slurm/cluster.sh.

    with running_cluster(tmp_dir) as cluster:
        job = cluster.sbatch("--wrap", "hostname")
        cluster.wait([job])

Every client command gets SLURM_CONF through `cluster.env`; the test process's own environment is
left alone, so other tests never see the cluster.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SH = ROOT / "slurm" / "cluster.sh"
# Job states Slurm can still change (compare.sh keeps the same list).
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
          "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}


def free_port_pair() -> int:
    """A port p with p and p + 1 free (slurmctld, slurmd): several test sessions can share a machine."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65535:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no two consecutive free ports")


@dataclass
class SlurmCluster:
    dir: Path
    env: dict

    def run(self, *cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def sbatch(self, *args: str) -> str:
        return self.run("sbatch", "--parsable", *args).stdout.strip().split(";")[0]

    def states(self, job_id: str) -> set[str]:
        """JobState of every task of a job (the controller keeps finished jobs for an hour here)."""
        out = self.run("scontrol", "-o", "show", "job", job_id, check=False).stdout
        return {field.split("=", 1)[1] for line in out.splitlines() for field in line.split()
                if field.startswith("JobState=")}

    def wait(self, job_ids: list[str], timeout: float = 1800) -> None:
        """Until the jobs end; the timeout only catches a hang (a loaded machine runs them many times slower)."""
        deadline = time.monotonic() + timeout
        while any(self.states(j) & ACTIVE for j in job_ids):
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs {job_ids} still active after {timeout} s:\n{self.run('squeue').stdout}")
            time.sleep(1)

    def leftover_pids(self) -> list[int]:
        """Processes of this cluster still alive: its daemons, slurmstepd, job processes."""
        import psutil

        marks = {f"SUSTAIN_SLURM_CLUSTER={self.dir}"}
        found = []
        for proc in psutil.process_iter():
            try:
                env = proc.environ()
            except (psutil.Error, OSError):
                continue
            if any(f"{k}={v}" in marks for k, v in env.items()) or (
                    env.get("SLURM_CONF") == self.env["SLURM_CONF"] and "SLURM_JOB_ID" in env):
                found.append(proc.pid)
        return found


@contextlib.contextmanager
def running_cluster(state_dir: Path):
    """Start a cluster with its state under state_dir; stop it (and everything it started) afterwards."""
    state_dir = Path(state_dir).resolve()
    env = {**os.environ, "SUSTAIN_SLURM_DIR": str(state_dir), "SUSTAIN_SLURM_PORT": str(free_port_pair()),
           "SLURM_CONF": str(state_dir / "etc" / "slurm.conf"),
           "SUSTAIN_PYTHON": sys.executable, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    cluster = SlurmCluster(state_dir, env)
    try:
        cluster.run(str(CLUSTER_SH), "start", timeout=120)
        yield cluster
    finally:
        cluster.run(str(CLUSTER_SH), "stop", check=False, timeout=120)
