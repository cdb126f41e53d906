"""Serve the simulator over HTTPS on loopback, like a Client Portal Gateway on `https://localhost:5000`.

A self-signed certificate for `localhost`, `127.0.0.1` and `::1` is made at start into a private
temporary directory and removed at exit. The printed base URL works as `broker.base_url` with
`verify_tls: false` (allowed for loopback only). uvicorn and cryptography come with the `serve`
extra (`pip install 'ibkr-gateway-cpapi[serve]'`) and are imported only here, only when called.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio
from ibkr_gateway_core.errors import ErrorCode, GatewayError

if TYPE_CHECKING:
    import uvicorn

    from .simulator import SimulatorState

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
"""The simulator serves loopback only: it has no authentication of its own."""

CERT_LIFETIME: Final = timedelta(days=7)
STARTUP_TIMEOUT_S: Final = 10.0
_STARTUP_POLL_S: Final = 0.02


@dataclass(frozen=True, slots=True)
class _CertFiles:
    directory: Path | None
    """The private directory of a certificate made here (removed at close); None for a given one."""
    cert: Path
    key: Path


def _make_self_signed_cert() -> _CertFiles:
    """A fresh key and certificate for the loopback names, in a 0700 temporary directory."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise _missing_extra("cryptography") from None

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CERT_LIFETIME)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp(prefix="ibkr-sim-tls-"))  # mkdtemp makes it 0700
    files = _CertFiles(directory, directory / "cert.pem", directory / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key_bytes)
    return files


def _missing_extra(module: str) -> GatewayError:
    return GatewayError(
        ErrorCode.CONFIG_BACKEND_NOT_INSTALLED,
        f"Serving the simulator needs {module}, which is not installed.",
        user_action="Install the serve extra: pip install 'ibkr-gateway-cpapi[serve]'.",
    )


def _bind(host: str, port: int) -> socket.socket:
    if host not in LOOPBACK_HOSTS:
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT,
            f"The simulator serves loopback only; {host!r} is not 127.0.0.1, localhost or ::1.",
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GatewayError(
            ErrorCode.INPUT_INVALID_ARGUMENT, f"Cannot listen on {host}:{port}: {exc.strerror or exc}."
        ) from None
    sock.set_inheritable(True)
    return sock


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}"


@dataclass(slots=True)
class _Prepared:
    server: uvicorn.Server
    sock: socket.socket
    certs: _CertFiles
    base_url: str

    def close(self) -> None:
        self.sock.close()
        if self.certs.directory is not None:
            shutil.rmtree(self.certs.directory, ignore_errors=True)

    async def wait_started(self) -> None:
        with anyio.fail_after(STARTUP_TIMEOUT_S):
            while not self.server.started:
                await anyio.sleep(_STARTUP_POLL_S)  # uvicorn offers no started event


def _prepare(
    host: str, port: int, state: SimulatorState | None, certificate: tuple[Path, Path] | None = None
) -> _Prepared:
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise _missing_extra("uvicorn") from None
    from .simulator import create_simulator_app

    sock = _bind(host, port)
    try:
        # A given certificate stays where it is: only a self-signed one made here is removed at close.
        certs = _make_self_signed_cert() if certificate is None else _CertFiles(None, *certificate)
    except BaseException:
        sock.close()
        raise
    config = uvicorn.Config(
        create_simulator_app(state),
        ssl_certfile=str(certs.cert),
        ssl_keyfile=str(certs.key),
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="websockets-sansio",  # `/v1/api/ws`: depth and the P&L stream
        http="h11",
        timeout_graceful_shutdown=1,
    )
    return _Prepared(uvicorn.Server(config), sock, certs, _base_url(host, sock.getsockname()[1]))


@asynccontextmanager
async def serving_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    state: SimulatorState | None = None,
    certificate: tuple[Path, Path] | None = None,
) -> AsyncGenerator[str]:
    """Serve the simulator over HTTPS while the block runs; yields the base URL (`https://127.0.0.1:<port>`).

    Args:
        host: A loopback address (`127.0.0.1`, `localhost` or `::1`).
        port: TCP port; 0 picks a free one.
        state: The simulator to serve; a fresh paper login when None.
        certificate: (certificate chain PEM, key PEM) to serve, e.g. issued by a private CA that clients
            trust through `broker.ca_file`; a fresh self-signed one when None.

    Raises:
        GatewayError: `INPUT_INVALID_ARGUMENT` for a non-loopback host or a busy port,
            `CONFIG_BACKEND_NOT_INSTALLED` without uvicorn or cryptography.
    """
    prepared = _prepare(host, port, state, certificate)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(prepared.server.serve, [prepared.sock])
            await prepared.wait_started()
            try:
                yield prepared.base_url
            finally:
                prepared.server.should_exit = True
    finally:
        prepared.close()


async def serve_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    state: SimulatorState | None = None,
    on_ready: Callable[[str], None] = print,
) -> None:
    """Serve the simulator over HTTPS until interrupted; `on_ready` gets the base URL once listening.

    Run it with `anyio.run(serve_simulator)`; the CLI's `simulator serve` passes host, port and a
    printer. Ctrl-C (SIGINT/SIGTERM) stops the server and is re-raised as uvicorn does. Raises what
    `serving_simulator` raises.
    """
    prepared = _prepare(host, port, state)
    try:
        async with anyio.create_task_group() as tg:

            async def announce() -> None:
                await prepared.wait_started()
                on_ready(prepared.base_url)

            tg.start_soon(announce)
            await prepared.server.serve([prepared.sock])
            tg.cancel_scope.cancel()
    finally:
        prepared.close()
