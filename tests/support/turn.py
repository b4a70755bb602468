"""A real coturn (Debian's `turnserver`) for tests, started inside the test's loopback-only network namespace on
free ports: TURN over UDP and TCP on one port, TURN over TLS (a test certificate for 127.0.0.1) on another, relay
ports in a small range, ephemeral credentials (use-auth-secret) with the gateway's secret."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .process import stop_process
from .server import free_port

TURN_SECRET = "test-turn-secret-0123456789abcdef"


def test_certificate(directory: Path, address: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for `address` (an IP SAN, so TLS clients that check the name accept it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "turn-cert.pem", directory / "turn-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class Turn:
    port: int  # TURN over UDP and TCP
    tls_port: int  # TURN over TLS
    relay_ports: tuple[int, int]
    cert: Path  # the test certificate (trust it for turns:)
    log: Path

    def url(self, transport: str) -> str:
        if transport == "tls":
            return f"turns:127.0.0.1:{self.tls_port}?transport=tcp"
        return f"turn:127.0.0.1:{self.port}?transport={transport}"

    @property
    def urls(self) -> list[str]:
        return [self.url("udp"), self.url("tcp"), self.url("tls")]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@asynccontextmanager
async def running_turn(directory: Path, secret: str = TURN_SECRET) -> AsyncIterator[Turn]:
    binary = shutil.which("turnserver")
    assert binary is not None, "coturn is not installed (scripts/setup.sh --test installs Debian's coturn)"
    cert, key = test_certificate(directory)
    port, tls_port = free_port(), free_port()
    low = 50_000 + (port % 1000) * 10
    turn = Turn(port, tls_port, (low, low + 9), cert, directory / "turnserver.log")
    command = [
        binary, "-n", "--no-cli", "--log-file", "stdout", "--simple-log", "--no-stdout-log",
        "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--external-ip", "127.0.0.1",
        "--listening-port", str(port), "--tls-listening-port", str(tls_port),
        "--alt-listening-port", "0", "--alt-tls-listening-port", "0",
        "--min-port", str(low), "--max-port", str(low + 9),
        "--use-auth-secret", "--static-auth-secret", secret, "--realm", "callin.test", "--fingerprint",
        "--allow-loopback-peers", "--cert", str(cert), "--pkey", str(key), "--no-dtls",
        "--pidfile", str(directory / "turnserver.pid"), "--userdb", str(directory / "turndb"),
    ]
    log = open(turn.log, "wb")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not (_listening(port) and _listening(tls_port)):
            assert process.poll() is None, f"turnserver exited: {turn.log.read_text(errors='replace')[-2000:]}"
            assert time.monotonic() < deadline, f"turnserver not listening: {turn.log.read_text(errors='replace')[-2000:]}"
            await asyncio.sleep(0.1)
        yield turn
    finally:
        stop_process(process)
        log.close()
