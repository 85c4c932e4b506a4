"""OPC-UA security against a real secured plant server on 127.0.0.1: who gets in, who does not,
what they are told, and that no password reaches a log."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from conftest import plant_server_thread
from cryptography import x509

from connectors.certs import create_certificate
from connectors.opcua import OpcUaCollector
from connectors.opcua_security import PASSWORD_ENV, Security, certificate_uri, connect_client
from connectors.sim.plants import make_plant
from connectors.sim.server import PlantServer
from connectors.sim.server_security import USERS_ENV, ServerSecurity
from twin.cli import main as twin_main
from twin.errors import ConnectorError
from twin.store.liveness import is_liveness

pytestmark = pytest.mark.integration

SECRET = "Plant-Pa55word!"
WRONG = "Guess-123"
CLIENT_URI = "urn:process-twin:test:collector"
ENDPOINTS = ("Basic256Sha256/SignAndEncrypt", "Aes128Sha256RsaOaep/Sign")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Server, client and stranger certificates (made once), and a trust folder with the client's."""
    root = tmp_path_factory.mktemp("pki")
    server = create_certificate(root / "server", "urn:process-twin:test:plant")
    client = create_certificate(root / "client", CLIENT_URI)
    stranger = create_certificate(root / "stranger", "urn:elsewhere:intruder")
    trust = root / "trusted"
    trust.mkdir()
    (trust / "client.der").write_bytes(client.cert.read_bytes())
    return {
        "server_cert": server.cert,
        "server_key": server.key,
        "cert": client.cert,
        "key": client.key,
        "stranger_cert": stranger.cert,
        "stranger_key": stranger.key,
        "trust": trust,
    }


@pytest.fixture(scope="module")
def secured(pki: dict[str, Path]) -> Iterator[PlantServer]:
    """The CSTR served with signed/encrypted endpoints only; users from $TWIN_PLANT_USERS."""
    security = ServerSecurity.from_options(
        security=ENDPOINTS,
        cert=pki["server_cert"],
        key=pki["server_key"],
        user_certs=[pki["cert"]],
        trust=pki["trust"],
        env={USERS_ENV: f"op:{SECRET},viewer:other-pw"},
    )
    plant = make_plant("cstr", seed=3)
    with plant_server_thread(plant, plant.spec.sample_period / 0.05, security=security) as s:
        yield s


def client_security(pki: dict[str, Path], policy: str, mode: str, password: str) -> Security:
    return Security.from_options(
        user="op",
        cert=pki["cert"],
        key=pki["key"],
        policy=policy,
        mode=mode,
        env={PASSWORD_ENV: password},
    )


async def read_temperature(endpoint: str, security: Security) -> float:
    """Connect with ``security`` and read the reactor temperature T."""
    client = await connect_client(endpoint, security)
    try:
        spec = make_plant("cstr").spec
        node = client.get_node(spec.tag("T").node.resolve(await client.get_namespace_array()))
        return float(await node.read_value())
    finally:
        await client.disconnect()


def test_certs_create_makes_a_certificate_whose_uri_the_client_announces(tmp_path: Path) -> None:
    """`twin certs create`: DER + PEM + a private key only its owner reads; the URI in the
    subjectAltName is what the client announces; an existing certificate is not overwritten."""
    out = tmp_path / "pki"
    argv = ["certs", "create", "--out", str(out), "--uri", CLIENT_URI, "--host", "twin-host"]
    assert twin_main([*argv, "--days", "30"]) == 0
    der = x509.load_der_x509_certificate((out / "cert.der").read_bytes())
    pem = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert der == pem
    san = der.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [CLIENT_URI]
    assert san.get_values_for_type(x509.DNSName) == ["twin-host"]
    valid = der.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=29) < valid <= timedelta(days=30)
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    assert certificate_uri(out / "cert.der") == CLIENT_URI
    before = (out / "key.pem").read_bytes()
    assert twin_main(argv) == 2  # exists: refused, key kept
    assert (out / "key.pem").read_bytes() == before


@pytest.mark.parametrize(("policy", "mode"), [p.split("/") for p in ENDPOINTS])
def test_right_credentials_connect_and_read_a_tag(
    secured: PlantServer, pki: dict[str, Path], policy: str, mode: str
) -> None:
    """User op with the right password gets a session on each offered policy and reads T."""
    value = asyncio.run(
        read_temperature(secured.endpoint, client_security(pki, policy, mode, SECRET))
    )
    assert math.isfinite(value) and 300 < value < 345


def test_wrong_password_is_refused_naming_the_user_not_the_password(
    secured: PlantServer, pki: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password: ConnectorError naming the user and the cause; the server logs why."""
    security = client_security(pki, "Basic256Sha256", "SignAndEncrypt", WRONG)
    with caplog.at_level(logging.INFO), pytest.raises(ConnectorError) as refused:
        asyncio.run(read_temperature(secured.endpoint, security))
    message = str(refused.value)
    assert "refused user 'op'" in message and "wrong user name or password" in message
    assert WRONG not in message and SECRET not in message
    assert "refused user 'op': wrong password" in caplog.text  # the server's side of the story


def test_client_without_security_is_refused_with_what_the_server_offers(
    secured: PlantServer, pki: dict[str, Path]
) -> None:
    """No security against a secured-only server: the message says what it offers and what
    to set; an anonymous session on a secure channel is refused as such."""
    plain = Security(user="op", password=SECRET)
    with pytest.raises(ConnectorError) as refused:
        asyncio.run(read_temperature(secured.endpoint, plain))
    message = str(refused.value)
    assert "offers no endpoint with security None/None" in message
    assert "Aes128Sha256RsaOaep/Sign, Basic256Sha256/SignAndEncrypt" in message
    assert "--security-policy" in message and SECRET not in message
    anonymous = Security(cert=pki["cert"], key=pki["key"], policy="Basic256Sha256", mode="Sign")
    with pytest.raises(ConnectorError, match=r"offers no endpoint.*Basic256Sha256/Sign "):
        asyncio.run(read_temperature(secured.endpoint, anonymous))
    anonymous = Security(
        cert=pki["cert"], key=pki["key"], policy="Basic256Sha256", mode="SignAndEncrypt"
    )
    with pytest.raises(ConnectorError, match="does not accept anonymous identities"):
        asyncio.run(read_temperature(secured.endpoint, anonymous))


def test_certificate_authentication_and_untrusted_certificates(
    secured: PlantServer, pki: dict[str, Path]
) -> None:
    """The holder of a listed user certificate signs in without a password; a certificate the
    server does not trust is refused at the secure channel, naming the certificate."""
    holder = Security(
        cert=pki["cert"],
        key=pki["key"],
        policy="Aes128Sha256RsaOaep",
        mode="Sign",
        cert_auth=True,
    )
    assert math.isfinite(asyncio.run(read_temperature(secured.endpoint, holder)))
    stranger = Security(
        user="op",
        password=SECRET,
        cert=pki["stranger_cert"],
        key=pki["stranger_key"],
        policy="Basic256Sha256",
        mode="SignAndEncrypt",
    )
    with pytest.raises(ConnectorError, match="refused the client certificate") as refused:
        asyncio.run(read_temperature(secured.endpoint, stranger))
    assert str(pki["stranger_cert"]) in str(refused.value)


def test_no_password_appears_in_any_log(
    secured: PlantServer,
    pki: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Right and wrong passwords, through the writer's client and the collector, with every
    logger at DEBUG (asyncua prints whole requests there): the passwords are in no record, no
    formatted log line, nothing on stdout or stderr of client or server."""

    async def main() -> pl.DataFrame:
        good = client_security(pki, "Basic256Sha256", "SignAndEncrypt", SECRET)
        await read_temperature(secured.endpoint, good)
        with pytest.raises(ConnectorError):
            wrong = client_security(pki, "Aes128Sha256RsaOaep", "Sign", WRONG)
            await read_temperature(secured.endpoint, wrong)
        collector = OpcUaCollector(secured.spec, secured.endpoint, security=good)
        # until every tag has a sample (a fixed second was too short on a loaded machine, where
        # the encrypted handshake with DEBUG dumps of every request takes longer), at most 30 s
        asyncio.get_running_loop().call_later(30.0, collector.stop)
        frames, seen = [], set()
        async for batch in collector.stream():
            if isinstance(batch, pl.DataFrame):
                frames.append(batch.filter(~is_liveness(pl.col("tag"))))  # samples, not marks
                seen |= set(frames[-1]["tag"])
                if seen >= set(secured.spec.tag_names):
                    collector.stop()
        return pl.concat(frames) if frames else pl.DataFrame({"tag": []})

    handler = logging.StreamHandler()  # a console handler too, as the CLI has
    logging.getLogger().addHandler(handler)
    try:
        # asyncua's own level too: an in-process `twin collect` earlier in the session may have
        # set it to ERROR (quiet_asyncua), and then no request dump would reach the handlers
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="asyncua"):
            rows = asyncio.run(main())
    finally:
        logging.getLogger().removeHandler(handler)
    assert set(rows["tag"]) == set(secured.spec.tag_names), "the collector got data"
    out, err = capfd.readouterr()
    assert "ActivateSessionRequest" in caplog.text, "DEBUG request dumps were captured"
    assert "UserNameIdentityToken" in caplog.text
    for secret in (SECRET, WRONG):
        assert secret not in caplog.text
        assert not any(secret in r.getMessage() for r in caplog.records)
        assert secret not in out and secret not in err


def test_plant_serve_cli_requires_users_from_the_environment(
    pki: dict[str, Path], free_port: int, plant_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`twin plant serve --security ... --cert --key` with $TWIN_PLANT_USERS: a user gets in,
    no-security clients do not, and the password is not on the server's console."""
    monkeypatch.setenv(USERS_ENV, f"op:{SECRET}")
    args = ["--security", ENDPOINTS[0], "--cert", str(pki["server_cert"])]
    args += ["--key", str(pki["server_key"]), "--speed", "60"]
    with plant_cli("cstr", free_port, *args) as server:
        security = client_security(pki, "Basic256Sha256", "SignAndEncrypt", SECRET)
        assert math.isfinite(asyncio.run(read_temperature(server.url, security)))
        with pytest.raises(ConnectorError, match="offers no endpoint"):
            asyncio.run(read_temperature(server.url, Security()))
        assert server.interrupt() == 0
    assert "Basic256Sha256/SignAndEncrypt" in server.stderr  # it says how it is secured
    assert "1 user(s) with password" in server.stderr
    assert SECRET not in server.stderr


def test_secured_server_needs_a_certificate_and_users_are_checked(tmp_path: Path) -> None:
    """Misconfigurations fail before serving, with the option to fix."""
    with pytest.raises(ConnectorError, match=r"needs a server certificate.*twin certs create"):
        ServerSecurity(endpoints=("Basic256Sha256/Sign",))
    with pytest.raises(ConnectorError, match="unknown server security 'Basic128/Sign'"):
        ServerSecurity(endpoints=("Basic128/Sign",))
    users = tmp_path / "users"
    users.write_text("op:pw\nbroken-line\n")
    os.chmod(users, 0o600)
    with pytest.raises(ConnectorError, match="entry 2 is not 'user:password'"):
        ServerSecurity.from_options(users_file=users)
    users.write_text("# operators\nop:pw:with:colons\n")
    assert ServerSecurity.from_options(users_file=users).users == {"op": "pw:with:colons"}
