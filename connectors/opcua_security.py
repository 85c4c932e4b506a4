"""OPC-UA client security for the collector and the writer: identity, certificate, policy, mode.

The settings are plain data (:class:`Security`) so the command line, a config file or a test can
build them; :func:`apply_security` hands them to an asyncua ``Client`` before it connects and
:func:`connect_client` connects one, turning a server's refusal into a
:class:`~twin.errors.ConnectorError` that says what was refused and why (:func:`refusal`).

Identities: anonymous, user name and password, or the application certificate itself (an X.509
identity token, ``cert_auth``). The password is read from the environment
(``TWIN_OPCUA_PASSWORD``) or from a file outside the spec (``--password-file``), never from the
command line or the spec; it never appears in a repr, and
:func:`~connectors.opcua_secrets.protect_secret` masks it in every asyncua log record (asyncua's
DEBUG log prints whole requests, identity token included).
The server side (the simulated plant's policies and users) is :mod:`connectors.sim.server_security`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from asyncua import Client, ua
from asyncua.crypto import security_policies
from cryptography import x509

from connectors.opcua_secrets import protect_secret, read_secret_file
from twin.errors import ConnectorError

log = logging.getLogger(__name__)

#: environment variable that holds the OPC-UA user's password
PASSWORD_ENV = "TWIN_OPCUA_PASSWORD"
#: environment variable naming a file that holds the password (first line)
PASSWORD_FILE_ENV = "TWIN_OPCUA_PASSWORD_FILE"
#: security policies asyncua implements that are not deprecated (OPC-UA 1.04+)
POLICIES = ("None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")
MODES = ("None", "Sign", "SignAndEncrypt")


@dataclass(frozen=True)
class Security:
    """How the collector authenticates and protects its session (defaults: anonymous, no security)."""

    user: str | None = None
    """user name for a UserName identity token; None for anonymous"""
    password: str | None = field(default=None, repr=False)
    """the user's password (from ``TWIN_OPCUA_PASSWORD``); never printed"""
    cert: Path | None = None
    """client application certificate (PEM or DER) for Sign / SignAndEncrypt"""
    key: Path | None = None
    """private key of ``cert`` (PEM or DER)"""
    policy: str = "None"
    """security policy: one of :data:`POLICIES`"""
    mode: str = "None"
    """message security mode: one of :data:`MODES`"""
    cert_auth: bool = False
    """sign in as the holder of ``cert`` (X.509 identity token) instead of a user name"""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConnectorError(
                f"unknown OPC-UA security policy {self.policy!r} (use one of {', '.join(POLICIES)})"
            )
        if self.mode not in MODES:
            raise ConnectorError(
                f"unknown OPC-UA security mode {self.mode!r} (use one of {', '.join(MODES)})"
            )
        if (self.policy == "None") != (self.mode == "None"):
            raise ConnectorError(
                f"security policy {self.policy!r} and mode {self.mode!r} do not fit: use both "
                "'None', or a policy such as Basic256Sha256 with mode Sign or SignAndEncrypt"
            )
        if self.policy != "None" and (self.cert is None or self.key is None):
            raise ConnectorError(
                f"security policy {self.policy} needs a client certificate and key (--cert, --key)"
            )
        if (self.cert is None) != (self.key is None):
            raise ConnectorError("give both a certificate and its private key (--cert and --key)")
        if self.password is not None and self.user is None:
            raise ConnectorError(f"a password is set ({PASSWORD_ENV}) but no user name (--user)")
        if self.cert_auth and (self.cert is None or self.user is not None):
            raise ConnectorError(
                "certificate authentication needs a client certificate and key (--cert, --key) "
                "and no user name"
            )

    @property
    def secure(self) -> bool:
        """True when messages are signed (and perhaps encrypted)."""
        return self.policy != "None"

    def describe(self) -> str:
        """One line for the log: identity and policy, never the password."""
        if self.cert_auth:
            who = f"certificate {self.cert}"
        else:
            who = f"user {self.user!r}" if self.user else "anonymous"
        return f"{who}, security {self.policy}/{self.mode}"

    @classmethod
    def from_options(
        cls,
        *,
        user: str | None,
        cert: str | Path | None,
        key: str | Path | None,
        policy: str | None,
        mode: str | None,
        env: Mapping[str, str],
        password_file: str | Path | None = None,
        cert_auth: bool = False,
    ) -> Security:
        """Build from command-line options; the password comes from ``password_file`` (or the file
        named by ``env[PASSWORD_FILE_ENV]``), else from ``env[PASSWORD_ENV]``.

        A certificate alone implies Basic256Sha256 with SignAndEncrypt, the usual server default.
        """
        if cert is not None and policy is None:
            policy = "Basic256Sha256"
        if policy not in (None, "None") and mode is None:
            mode = "SignAndEncrypt"
        password_file = password_file or env.get(PASSWORD_FILE_ENV) or None
        if password_file is not None and not user:
            raise ConnectorError(f"a password file is given ({password_file}) but no user (--user)")
        if password_file is not None:
            password: str | None = read_secret_file(password_file)
        else:
            password = env.get(PASSWORD_ENV) if user else None
        for label, path in (("certificate", cert), ("private key", key)):
            if path is not None and not Path(path).is_file():
                raise ConnectorError(f"OPC-UA client {label} file not found: {path}")
        return cls(
            user=user,
            password=password,
            cert=Path(cert) if cert is not None else None,
            key=Path(key) if key is not None else None,
            policy=policy or "None",
            mode=mode or "None",
            cert_auth=cert_auth,
        )


async def apply_security(client: Client, security: Security) -> None:
    """Configure ``client`` (before ``connect``) with the identity and security of ``security``.

    With a policy other than None this asks the server for its endpoints (to pick the server
    certificate), so it needs the server to be reachable, like ``connect`` itself. The client
    announces the application URI of its certificate, as servers require.
    """
    if security.user is not None:
        client.set_user(security.user)
        if security.password is not None:
            protect_secret(security.password)
            client.set_password(security.password)
    if security.cert is None or security.key is None:
        return
    uri = certificate_uri(security.cert)
    if uri:  # servers check that the session's application URI is the certificate's
        client.application_uri = uri
    if security.cert_auth:
        await client.load_client_certificate(str(security.cert))
        await client.load_private_key(security.key)
    if not security.secure:
        return
    policy = getattr(security_policies, f"SecurityPolicy{security.policy}")
    mode = getattr(ua.MessageSecurityMode, security.mode)
    await client.set_security(policy, str(security.cert), str(security.key), mode=mode)


async def connect_client(
    endpoint: str, security: Security, *, timeout_s: float = 4.0, watchdog_s: float = 1.0
) -> Client:
    """A connected ``Client`` for ``endpoint``; a refusal raises ConnectorError saying why.

    ``watchdog_s``: asyncua probes the session this often and drops it when a probe is not
    answered within the interval (a server busy with a large history page answers late).
    The caller closes it (``await client.disconnect()``).
    """
    client = Client(check_endpoint(endpoint), timeout=timeout_s, watchdog_intervall=watchdog_s)
    client.session_timeout = 600_000  # ms: asyncua servers grant at most 10 min
    try:
        await apply_security(client, security)
        await client.connect()
    except Exception as exc:
        with contextlib.suppress(Exception):
            await client.disconnect()
        offered: list[str] = []
        if _no_endpoint(exc):
            with contextlib.suppress(Exception):
                offered = await offered_security(endpoint, timeout_s=timeout_s)
        explained = refusal(exc, endpoint, security, offered)
        if explained is not None:
            raise explained from exc
        raise ConnectorError(
            f"cannot connect to OPC-UA server {endpoint}: {describe_error(exc)}"
        ) from exc
    log.info("connected to %s (%s)", endpoint, security.describe())
    return client


#: status codes a server answers when it refuses the client's identity (retrying cannot help)
IDENTITY_REFUSED = (
    ua.uaerrors.BadUserAccessDenied,
    ua.uaerrors.BadIdentityTokenInvalid,
    ua.uaerrors.BadIdentityTokenRejected,
)
#: status codes a server answers when it refuses the client's certificate
_CERTIFICATE = (
    ua.uaerrors.BadCertificateUntrusted,
    ua.uaerrors.BadCertificateInvalid,
    ua.uaerrors.BadCertificateUriInvalid,
    ua.uaerrors.BadCertificateTimeInvalid,
    ua.uaerrors.BadCertificateUseNotAllowed,
    ua.uaerrors.BadCertificateRevoked,
    ua.uaerrors.BadSecurityChecksFailed,
)


async def offered_security(endpoint: str, *, timeout_s: float = 4.0) -> list[str]:
    """The ``Policy/Mode`` pairs a server's endpoints offer (``None`` for no security)."""
    endpoints = await Client(endpoint, timeout=timeout_s).connect_and_get_server_endpoints()
    names = {getattr(security_policies, f"SecurityPolicy{p}").URI: p for p in POLICIES}
    out = []
    for ep in endpoints:
        policy = names.get(ep.SecurityPolicyUri, ep.SecurityPolicyUri.rpartition("#")[2])
        out.append("None" if policy == "None" else f"{policy}/{ep.SecurityMode.name}")
    return sorted(set(out))


def _no_endpoint(exc: BaseException) -> bool:
    return isinstance(exc, ua.UaError) and "No matching endpoints" in str(exc)


def refusal(
    exc: BaseException, endpoint: str, security: Security, offered: Sequence[str] = ()
) -> ConnectorError | None:
    """A clear error when ``exc`` is a server refusing who we are or how we connect, else None.

    Retrying cannot fix these: a wrong password, an identity the server does not accept, a
    security policy it does not offer, a client certificate it does not trust. The message names
    the user (never the password), the policy and what to change.
    """
    who = security.describe()
    name = type(exc).__name__
    if isinstance(exc, ua.uaerrors.BadUserAccessDenied):
        if security.cert_auth:
            why = f"certificate {security.cert} is not a known user certificate there"
        elif security.user:
            why = f"wrong user name or password for user {security.user!r}"
        else:
            why = "anonymous access is not allowed: give a user (--user) and its password"
        return ConnectorError(f"OPC-UA server {endpoint} refused {who}: {why} ({name})")
    if isinstance(exc, IDENTITY_REFUSED):
        kind = (
            "certificate" if security.cert_auth else "user name" if security.user else "anonymous"
        )
        return ConnectorError(
            f"OPC-UA server {endpoint} refused {who}: it does not accept {kind} identities "
            f"on this endpoint ({name})"
        )
    if isinstance(exc, _CERTIFICATE):
        return ConnectorError(
            f"OPC-UA server {endpoint} refused the client certificate {security.cert} ({who}): "
            f"{name}; the server must trust it and its application URI must match"
        )
    if isinstance(exc, ua.uaerrors.BadSecurityPolicyRejected | ua.uaerrors.BadSecurityModeRejected):
        return ConnectorError(
            f"OPC-UA server {endpoint} rejected security {security.policy}/{security.mode} ({name})"
        )
    if _no_endpoint(exc):
        hint = (
            "set --security-policy, --security-mode and a client certificate (--cert, --key)"
            if not security.secure
            else "choose a policy and mode the server offers"
        )
        offers = f"it offers {', '.join(offered)}" if offered else "it requires another"
        return ConnectorError(
            f"OPC-UA server {endpoint} offers no endpoint with security "
            f"{security.policy}/{security.mode} ({offers}): {hint}"
        )
    return None


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is an ``opc.tcp://host[:port][/path]`` URL, else a ConnectorError saying so.

    Checked before any connection attempt: asyncua's own message for a URL without the scheme
    (``host and port was not specified``) does not say what is wrong.
    """
    text = endpoint.strip()
    if not text.lower().startswith("opc.tcp://"):
        scheme = text.partition("://")[0] if "://" in text else ""
        got = f"scheme {scheme + '://'!r}" if scheme else "no scheme"
        raise ConnectorError(
            f"endpoint {endpoint!r} is not an OPC-UA URL ({got}): it must start with opc.tcp://, "
            "e.g. opc.tcp://192.168.0.10:4840/plant"
        )
    try:
        parsed = urlparse(text)
        parsed.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise ConnectorError(f"endpoint {endpoint!r}: {exc}") from None
    if not parsed.hostname:
        raise ConnectorError(
            f"endpoint {endpoint!r} names no host: use opc.tcp://<host>:<port>/<path>"
        )
    return text


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a log message or an error (no traceback)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def certificate_uri(path: Path) -> str | None:
    """The application URI (first URI in subjectAltName) of a PEM or DER certificate file."""
    try:
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except (OSError, ValueError) as exc:
        raise ConnectorError(f"cannot read OPC-UA client certificate {path}: {exc}") from exc
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
