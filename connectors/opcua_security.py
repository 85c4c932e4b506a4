"""OPC-UA session security for the collector: user name and password, certificate, policy, mode.

The settings are plain data (:class:`Security`) so the command line, a config file or a test can
build them; :func:`apply_security` hands them to an asyncua ``Client`` before it connects. The
password is read from the environment (``TWIN_OPCUA_PASSWORD``), never from the command line,
and it never appears in a repr or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies
from cryptography import x509

from twin.errors import ConnectorError

log = logging.getLogger(__name__)

#: environment variable that holds the OPC-UA user's password
PASSWORD_ENV = "TWIN_OPCUA_PASSWORD"
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

    @property
    def secure(self) -> bool:
        """True when messages are signed (and perhaps encrypted)."""
        return self.policy != "None"

    def describe(self) -> str:
        """One line for the log: identity and policy, never the password."""
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
    ) -> Security:
        """Build from command-line options; the password comes from ``env[PASSWORD_ENV]``.

        A certificate alone implies Basic256Sha256 with SignAndEncrypt, the usual server default.
        """
        if cert is not None and policy is None:
            policy = "Basic256Sha256"
        if policy not in (None, "None") and mode is None:
            mode = "SignAndEncrypt"
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
        )


async def apply_security(client: Client, security: Security) -> None:
    """Configure ``client`` (before ``connect``) with the identity and security of ``security``.

    With a policy other than None this asks the server for its endpoints (to pick the server
    certificate), so it needs the server to be reachable, like ``connect`` itself.
    """
    if security.user is not None:
        client.set_user(security.user)
        if security.password is not None:
            client.set_password(security.password)
    if not security.secure:
        return
    assert security.cert is not None and security.key is not None  # checked in __post_init__
    uri = certificate_uri(security.cert)
    if uri:  # servers check that the session's application URI is the certificate's
        client.application_uri = uri
    policy = getattr(security_policies, f"SecurityPolicy{security.policy}")
    mode = getattr(ua.MessageSecurityMode, security.mode)
    await client.set_security(policy, str(security.cert), str(security.key), mode=mode)


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
