"""Sharing a build between machines through a real SSH remote: dvc-ssh and our own OpenSSH
server on 127.0.0.1 (tests/ssh_server.py). One clone pushes, a fresh clone restores the
build byte for byte, and the pulled model starts a new pair."""

from __future__ import annotations

import hashlib
import json
import shlex

import pytest
import yaml

from conftest import BIN, copy_project, edit_yaml, env, pair_config, rules_run, run, snakemake
from ssh_server import another_host_key, running_sshd
from test_pipeline import dvc_outputs, planned_jobs

WEIGHTS = "results/models/wa_wb/weights.msgpack"
SWAP = "results/swaps/wa_as_wb.mp4"
GIT_USER = ["-c", "user.name=t", "-c", "user.email=t@t"]


@pytest.fixture
def ssh_server(tmp_path):
    with running_sshd(tmp_path / "sshd") as server:
        yield server


def pin_host_key(home, server, public_key: str) -> None:
    """The README's pinning, in this user's ~/.ssh/config (which asyncssh, under dvc-ssh,
    reads): OpenSSH carries the connection and refuses a server whose host key is not
    `public_key`. Its messages go to ~/.ssh/dvc-ssh.log: dvc only says "Connection lost"."""
    (home / ".ssh/known_hosts_dvc").write_text(server.known_hosts_line(public_key))
    (home / ".ssh/config").write_text(
        "Host 127.0.0.1\n"
        "    ProxyCommand ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=yes"
        " -o UserKnownHostsFile=%d/.ssh/known_hosts_dvc -E %d/.ssh/dvc-ssh.log"
        f" -i {shlex.quote(str(server.client_key))} -p %p -l %r %h -W 127.0.0.1:%p\n")


def test_ssh_remote_shares_the_build_and_its_model_starts_a_new_pair(built, ssh_server, tmp_path):
    project = copy_project(built, tmp_path / "p")
    remote = tmp_path / "remote"  # on the server's side of the SSH connection
    dvc = str(BIN / "dvc")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    user = dict(env(), HOME=str(home))  # a user of our own, with a ~/.ssh of our own
    run([dvc, "remote", "add", "-d", "team", f"ssh://{ssh_server.user}@127.0.0.1:{ssh_server.port}{remote}"], project)
    run([dvc, "remote", "modify", "--local", "team", "keyfile", str(ssh_server.client_key)], project)
    assert "keyfile" not in (project / ".dvc/config").read_text()  # in .dvc/config.local, which git ignores
    run(["git", "add", "-A"], project)
    run(["git", *GIT_USER, "commit", "-qm", "build"], project)

    # dvc-ssh checks no host key: a wrong one in ~/.ssh/known_hosts does not stop it.
    impostor = another_host_key(tmp_path)
    (home / ".ssh/known_hosts").write_text(ssh_server.known_hosts_line(impostor))
    assert "new:" in run([dvc, "status", "--cloud"], project, environment=user).stdout

    pin_host_key(home, ssh_server, impostor)
    proc = run([dvc, "push", "-q"], project, check=False, environment=user)
    assert proc.returncode != 0
    assert "Host key verification failed" in (home / ".ssh/dvc-ssh.log").read_text()
    assert not [p for p in remote.rglob("*") if p.is_file()]

    pin_host_key(home, ssh_server, ssh_server.host_public_key)
    run([dvc, "push", "-q"], project, environment=user)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    # The remote came with the clone; its key file is each user's, added as in the README.
    run([dvc, "remote", "modify", "--local", "team", "keyfile", str(ssh_server.client_key)], clone)
    assert not (clone / WEIGHTS).exists()
    run([str(BIN / "facepipe"), "restore"], clone, environment=user)
    for path in (WEIGHTS, SWAP):
        assert (clone / path).read_bytes() == (project / path).read_bytes(), path
    assert planned_jobs(clone) == {}

    # The clone starts a project of its own from the pulled model: another pair, in a
    # config without wa_wb, so results/models/wa_wb is a plain folder to start from.
    config = dict(pair_config(), pairs={"wb_wa": {"a": "woman_b", "b": "woman_a"}}, swaps={})
    (clone / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    edit_yaml(clone, "params.yaml", lambda params: params["train"].update(init_from="results/models/wa_wb", steps=20))
    proc = snakemake(clone, "results/models/wb_wa/model.json")
    assert rules_run(proc) == {"train"}  # the pulled datasets as they are
    assert "results/models/wb_wa/weights.msgpack" in dvc_outputs(clone)  # versioned, to push in turn
    started = json.loads((clone / "results/models/wb_wa/model.json").read_text())["started_from"]
    assert started["model"] == "results/models/wa_wb"
    assert started["weights_sha256"] == hashlib.sha256((project / WEIGHTS).read_bytes()).hexdigest()
