"""A real OpenSSH server on 127.0.0.1 for the tests: our own `sshd` child process (not the
system service), with a fresh host key and a fresh client key, key authentication only."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")  # sshd refuses to start unless called by an absolute path
PACKAGES = ["openssh-server", "openssh-client"]  # sshd; ssh and ssh-keygen
START_TIMEOUT_S = 10


@dataclass(frozen=True)
class SSHServer:
    """What a test needs to reach the server as `user@127.0.0.1:port`."""

    port: int
    user: str
    client_key: Path  # private key, its public half authorized on the server
    host_public_key: str  # "ssh-ed25519 AAAA...", as known_hosts lists it

    def known_hosts_line(self, public_key: str | None = None) -> str:
        """A known_hosts entry for this server: its own key, or `public_key`."""
        return f"[127.0.0.1]:{self.port} {public_key or self.host_public_key}\n"


def _missing_tools() -> list[str]:
    missing = [] if SSHD.is_file() else [str(SSHD)]
    return missing + [tool for tool in ("ssh", "ssh-keygen") if shutil.which(tool) is None]


def _install_or_give_up() -> None:
    """Install OpenSSH with apt-get when it is missing. Under CI a machine where that is
    impossible fails the test; elsewhere it is skipped, saying why."""
    missing = _missing_tools()
    if not missing:
        return
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or apt_get is None:
        message = (f"OpenSSH is missing ({', '.join(missing)}) and cannot be installed here "
                   f"({'not root' if apt_get else 'no apt-get'}): apt-get install {' '.join(PACKAGES)}")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    install = [apt_get, "install", "-y", "--no-install-recommends", *PACKAGES]
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(install, env=environment, capture_output=True, text=True)
    if proc.returncode != 0:  # package lists may be stale or absent: refresh them only then
        subprocess.run([apt_get, "update"], env=environment, capture_output=True, text=True)
        proc = subprocess.run(install, env=environment, capture_output=True, text=True)
    if proc.returncode != 0 or _missing_tools():
        pytest.fail(f"apt-get install {' '.join(PACKAGES)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")


def _keygen(path: Path) -> str:
    """A fresh ed25519 key pair at `path` (no passphrase); returns the public key."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "facepipe-test", "-f", str(path)],
                   check=True, capture_output=True)
    kind, key, _comment = path.with_suffix(".pub").read_text().split()
    return f"{kind} {key}"


def another_host_key(folder: Path) -> str:
    """A public key that is not the server's, for a known_hosts entry that must not match."""
    return _keygen(folder / "impostor_ed25519")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_listening(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def running_sshd(folder: Path):
    """Start sshd for the current user on a free port of 127.0.0.1, its keys and config
    in `folder`; yields an SSHServer and stops it by its process id."""
    _install_or_give_up()
    folder.mkdir(parents=True, exist_ok=True)
    host_key = folder / "host_ed25519"
    host_public_key = _keygen(host_key)
    client_key = folder / "client_ed25519"
    authorized = folder / "authorized_keys"
    authorized.write_text(_keygen(client_key) + "\n")
    if os.geteuid() == 0:  # the privilege separation folder, which sshd as root requires
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized}",
        f"PidFile {folder / 'sshd.pid'}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",  # the tests may run as root: keys only
        "UsePAM no",
        "UseDNS no",
        "StrictModes no",  # the keys live under /tmp, which is group- and world-writable
        "Subsystem sftp internal-sftp",  # no separate sftp-server binary needed
    ]) + "\n")
    log = folder / "sshd.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_until_listening(proc, port, log)
        yield SSHServer(port=port, user=getpass.getuser(), client_key=client_key, host_public_key=host_public_key)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
