"""A one-node Slurm cluster on this machine, for the tests: Debian's slurmctld, slurmd
and munge (installed with apt-get when missing, as root), configured in a folder of the
test's own, with a munge key and socket of its own and a schedulable fake GPU, started
in the foreground as children and stopped by PID. Clients find it through SLURM_CONF.

Accounting is off (no slurmdbd): Snakemake's Slurm executor asks squeue for job states
(which needs MinJobAge well above its polling interval), and the job completion log
(`jobs.txt`) is Slurm's record of every job that ran."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
# Snakemake's job step runs `srun` without the SLURM_* variables it inherits (SLURM_CONF
# among them), so srun reads the default location: ours is linked there while we run.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
PROGRAMS = ["slurmctld", "slurmd", "sbatch", "squeue", "munged"]


def install() -> None:
    """Debian's Slurm and munge, unless already there."""
    if all(shutil.which(program) for program in PROGRAMS):
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"Slurm is not installed and installing it needs root: apt-get install {' '.join(PACKAGES)}")
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=environment, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=environment, check=True, capture_output=True)
        subprocess.run(command, env=environment, check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.jobs_log = folder / "jobs.txt"
        self.processes: list[subprocess.Popen] = []
        self.replaced_conf: bytes | None = None
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
        node = " ".join(part for part in node.split() if not part.startswith("UpTime="))
        # Twice the machine's cores, one a socket's core (slurmd takes the configured
        # node as it is: config_overrides), so two builds' jobs can run side by side.
        cores = 2 * int(re.search(r"CPUs=(\d+)", node).group(1))
        node = re.sub(r"CPUs=\d+ Boards=\d+ SocketsPerBoard=\d+ CoresPerSocket=\d+ ThreadsPerCore=\d+",
                      f"CPUs={cores} Boards=1 SocketsPerBoard=1 CoresPerSocket={cores} ThreadsPerCore=1", node)
        host = node.split()[0].removeprefix("NodeName=")
        folder = self.folder
        for sub in ("state", "spool"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"""\
ClusterName=facepipe-test
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge.socket
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobs_log}
GresTypes=gpu
MpiDefault=none
{node} Gres=gpu:fake:1 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
        # A GPU the scheduler can hand out; a job asking for one sees CUDA_VISIBLE_DEVICES=0.
        (folder / "gres.conf").write_text(f"AutoDetect=off\nNodeName={host} Name=gpu Type=fake File=/dev/null\n")

    def _start(self, command: list[str], log: str) -> None:
        with open(self.folder / log, "w") as out:
            self.processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env))

    def start(self, timeout: float = 30) -> SlurmCluster:
        try:
            self._start_all(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self, timeout: float) -> None:
        install()
        self.folder.mkdir(parents=True, exist_ok=True)
        key = self.folder / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        self._start(["munged", "--foreground", "--force", f"--socket={self.folder}/munge.socket", f"--key-file={key}",
                     f"--log-file={self.folder}/munged.log", f"--pid-file={self.folder}/munged.pid",
                     f"--seed-file={self.folder}/munged.seed"], "munged.out")
        self._wait(lambda: (self.folder / "munge.socket").exists(), timeout, "munged")
        self._write_config()
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            self.replaced_conf = SYSTEM_CONF.read_bytes()
            SYSTEM_CONF.unlink()
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self._start(["slurmctld", "-D", "-f", str(self.conf)], "slurmctld.out")
        self._start(["slurmd", "-D", "-f", str(self.conf)], "slurmd.out")
        self._wait(self._idle, timeout, "the node to become idle")

    def _idle(self) -> bool:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
        return proc.returncode == 0 and proc.stdout.strip() == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in sorted(self.folder.glob("*.out")))
                raise RuntimeError(f"Slurm test cluster: waiting for {what} failed ({', '.join(dead) or 'timeout'}):\n"
                                   f"{logs}")
            time.sleep(0.2)

    def finished_jobs(self) -> list[dict]:
        """Slurm's record of every job that ended: one dict of its fields each."""
        if not self.jobs_log.exists():
            return []
        return [dict(field.split("=", 1) for field in line.split() if "=" in field)
                for line in self.jobs_log.read_text().splitlines() if line.strip()]

    def job(self, job_id: str) -> dict:
        """What slurmctld still knows of a job (for MinJobAge after it ended): its fields,
        the resources it asked for among them (TresPerJob, e.g. gres:gpu:1)."""
        text = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True,
                              env=self.env).stdout
        return dict(field.split("=", 1) for field in text.split() if "=" in field)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.readlink() == self.conf:
            SYSTEM_CONF.unlink()
            if self.replaced_conf is not None:
                SYSTEM_CONF.write_bytes(self.replaced_conf)
