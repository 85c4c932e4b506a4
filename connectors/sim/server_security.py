"""OPC-UA server security for the simulated plant: policies, server certificate, users, trust.

By default the plant server stays open (security None, anonymous) on loopback, for the demo.
:class:`ServerSecurity` makes it require what a real plant server requires: endpoints with
signed or encrypted messages only (``Basic256Sha256/SignAndEncrypt``, ``Aes128Sha256RsaOaep/Sign``,
...), a user name and password (:class:`PlantUserManager`, passwords from ``$TWIN_PLANT_USERS`` or
a users file, never from a spec or the command line), or a known user certificate; anonymous
sessions are refused as soon as users are required. Client application certificates must carry
the application URI the client announces, and with ``trust`` only listed certificates get in.
:func:`configure_server` applies it all to an asyncua ``Server`` between ``init`` and ``start``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.user_managers import UserManager
from cryptography import x509

from connectors.opcua_secrets import protect_secret, read_private_text
from connectors.opcua_security import MODES, POLICIES, certificate_uri
from twin.errors import ConnectorError

log = logging.getLogger(__name__)

#: environment variable with the plant server's users: ``user:password,user2:password2``
USERS_ENV = "TWIN_PLANT_USERS"


def parse_users(text: str, source: str) -> dict[str, str]:
    """``user:password`` entries, separated by commas or new lines (``#`` starts a comment line)."""
    users: dict[str, str] = {}
    entries = [e for line in text.splitlines() for e in line.split(",")]
    for n, entry in enumerate(e.strip() for e in entries):
        if not entry or entry.startswith("#"):
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise ConnectorError(
                f"{source}: entry {n + 1} is not 'user:password' (user {user.strip()!r})"
            )
        users[user.strip()] = password
    if not users:
        raise ConnectorError(f"{source}: no 'user:password' entry")
    return users


def read_users_file(path: str | Path) -> dict[str, str]:
    """Users of a users file: one ``user:password`` per line (chmod 600 it)."""
    return parse_users(read_private_text(path), str(path))


def _endpoint(text: str) -> ua.SecurityPolicyType:
    """``None`` or ``<Policy>/<Mode>`` as asyncua's SecurityPolicyType."""
    if text == "None":
        return ua.SecurityPolicyType.NoSecurity
    policy, _, mode = text.partition("/")
    if policy not in POLICIES[1:] or mode not in MODES[1:]:
        choices = ", ".join(f"{p}/{m}" for p in POLICIES[1:] for m in MODES[1:])
        raise ConnectorError(f"unknown server security {text!r}: use None or one of {choices}")
    return ua.SecurityPolicyType[f"{policy}_{mode}"]


@dataclass(frozen=True)
class ServerSecurity:
    """How the plant server protects itself (defaults: open, anonymous, security None)."""

    endpoints: tuple[str, ...] = ("None",)
    """offered security: ``None`` and/or ``<Policy>/<Mode>`` such as ``Basic256Sha256/Sign``"""
    cert: Path | None = None
    """server application certificate (DER or PEM); needed by any policy but None"""
    key: Path | None = None
    """private key of ``cert``"""
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    """user name -> password; never printed"""
    user_certs: tuple[Path, ...] = ()
    """certificates whose holders may sign in with an X.509 identity token (user = their CN)"""
    trust: Path | None = None
    """folder of trusted client application certificates; None accepts any (URI still checked)"""
    anonymous: bool | None = None
    """allow anonymous sessions; None: only when neither users nor user certificates are set"""

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ConnectorError("the server needs at least one endpoint security (e.g. None)")
        for text in self.endpoints:
            _endpoint(text)
        if self.secure and (self.cert is None or self.key is None):
            raise ConnectorError(
                f"server security {', '.join(self.endpoints)} needs a server certificate and key "
                "(--cert, --key; make them with `twin certs create`)"
            )
        for path in (self.cert, self.key, *self.user_certs):
            if path is not None and not path.is_file():
                raise ConnectorError(f"server security file not found: {path}")
        if self.trust is not None and not self.trust.is_dir():
            raise ConnectorError(f"trusted certificate folder not found: {self.trust}")
        if self.anonymous is False and not (self.users or self.user_certs):
            raise ConnectorError(
                "anonymous access is off but no users or user certificates are set"
            )

    @property
    def secure(self) -> bool:
        """True when some endpoint signs messages."""
        return any(e != "None" for e in self.endpoints)

    @property
    def allow_anonymous(self) -> bool:
        """Whether anonymous sessions are accepted."""
        if self.anonymous is not None:
            return self.anonymous
        return not (self.users or self.user_certs)

    @property
    def is_default(self) -> bool:
        """True for the open demo setting (nothing to configure)."""
        return self == ServerSecurity()

    def describe(self) -> str:
        """One line for the log: endpoints and identities, never a password."""
        who = []
        if self.allow_anonymous:
            who.append("anonymous")
        if self.users:
            who.append(f"{len(self.users)} user(s) with password")
        if self.user_certs:
            who.append(f"{len(self.user_certs)} user certificate(s)")
        trust = f", trusting only {self.trust}" if self.trust else ""
        return f"security {', '.join(self.endpoints)}; identities: {', '.join(who)}{trust}"

    @classmethod
    def from_options(
        cls,
        *,
        security: Sequence[str] | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        users_file: str | Path | None = None,
        user_certs: Sequence[str | Path] = (),
        trust: str | Path | None = None,
        anonymous: bool | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ServerSecurity:
        """Build from command-line options; users come from ``users_file``, else ``env[USERS_ENV]``."""
        users: dict[str, str] = {}
        if users_file is not None:
            users = read_users_file(users_file)
        elif env and env.get(USERS_ENV):
            users = parse_users(env[USERS_ENV], f"${USERS_ENV}")
        return cls(
            endpoints=tuple(security or ("None",)),
            cert=Path(cert) if cert is not None else None,
            key=Path(key) if key is not None else None,
            users=users,
            user_certs=tuple(Path(p) for p in user_certs),
            trust=Path(trust) if trust is not None else None,
            anonymous=anonymous,
        )


class PlantUserManager(UserManager):
    """asyncua user manager: users with passwords, user certificates, anonymous if allowed."""

    def __init__(
        self, users: Mapping[str, str], cert_users: Mapping[bytes, str], *, anonymous: bool
    ) -> None:
        self._users = dict(users)
        self._cert_users = dict(cert_users)
        self._anonymous = anonymous

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        """The signed-in user, or None to refuse (the client gets BadUserAccessDenied)."""
        if username is not None:
            expected = self._users.get(username)
            given = (password or "").encode("utf-8")
            # compare even for an unknown user, so timing does not tell which names exist
            ok = hmac.compare_digest(given, (expected or "\0").encode("utf-8"))
            if ok and expected is not None:
                log.info("user %r signed in", username)
                return User(role=UserRole.User, name=username)
            why = "wrong password" if expected is not None else "unknown user"
            log.warning("refused user %r: %s", username, why)
            return None
        if certificate is not None:
            name = self._cert_users.get(bytes(certificate))
            if name is not None:
                log.info("certificate user %r signed in", name)
                return User(role=UserRole.User, name=name)
            log.warning("refused a user certificate that is not on the list")
            return None
        if self._anonymous:
            return User(role=UserRole.User)
        log.warning("refused an anonymous session: this server requires a user")
        return None


async def configure_server(server: Server, security: ServerSecurity) -> str | None:
    """Apply ``security`` to ``server`` (after ``init``, before ``start``).

    Returns the application URI of the server certificate (the server should announce it), or
    None without a certificate.
    """
    server.set_security_policy([_endpoint(e) for e in security.endpoints])
    tokens: list[type] = []
    if security.allow_anonymous:
        tokens.append(ua.AnonymousIdentityToken)
    if security.users:
        tokens.append(ua.UserNameIdentityToken)
        for password in security.users.values():
            protect_secret(password)
        if not security.secure:
            log.warning("passwords travel unencrypted: the server offers security None only")
    if security.user_certs:
        tokens.append(ua.X509IdentityToken)
    server.set_identity_tokens(tokens)
    cert_users: dict[bytes, str] = {}
    for path in security.user_certs:
        cert = await uacrypto.load_certificate(path)
        cert_users[uacrypto.der_from_x509(cert)] = _common_name(cert) or path.stem
    server.iserver.set_user_manager(
        PlantUserManager(security.users, cert_users, anonymous=security.allow_anonymous)
    )
    uri = None
    if security.cert is not None and security.key is not None:
        await server.load_certificate(str(security.cert))
        await server.load_private_key(str(security.key))
        uri = certificate_uri(security.cert)
    if security.secure:
        options = (
            CertificateValidatorOptions.BASIC_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
        )
        store = None
        if security.trust is not None:
            store = TrustStore([security.trust], [])
            await store.load()
            options |= CertificateValidatorOptions.TRUSTED
        server.set_certificate_validator(CertificateValidator(options, store))
    log.info("%s", security.describe())
    return uri


def _common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else None
