"""Self-signed OPC-UA application certificates (``twin certs create``).

An OPC-UA application certificate names the application by URI in its subjectAltName; servers
check that this URI equals the ApplicationUri the client announces when it opens a session, so
:func:`create_certificate` writes the URI there and :func:`connectors.opcua_security.apply_security`
makes the client announce the same one. The key and the certificate are made with asyncua's own
helpers (``asyncua.crypto.cert_gen``): RSA 2048, SHA-256, valid for both client and server use.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from twin.errors import ConnectorError

log = logging.getLogger(__name__)

#: file names written into the output folder
CERT_DER, CERT_PEM, KEY_PEM = "cert.der", "cert.pem", "key.pem"


@dataclass(frozen=True)
class AppCertificate:
    """The files of one application certificate and what it says."""

    cert: Path
    """certificate, DER (what most OPC-UA stacks load)"""
    cert_pem: Path
    """the same certificate, PEM"""
    key: Path
    """private key, PEM (PKCS#8, unencrypted, readable by its owner only)"""
    uri: str
    """application URI in the subjectAltName"""
    host: str
    """DNS name in the subjectAltName"""
    not_after: datetime
    """end of validity (UTC)"""
    fingerprint: str
    """SHA-256 fingerprint, hex"""


def create_certificate(
    out: str | Path,
    uri: str,
    *,
    host: str | None = None,
    days: int = 365,
    name: str | None = None,
    overwrite: bool = False,
) -> AppCertificate:
    """Write a new key and a self-signed certificate for application ``uri`` into folder ``out``.

    ``host`` (default: this machine's name) goes into the subjectAltName as a DNS name; ``name``
    (default: ``uri``) is the subject's common name. Existing files are kept unless ``overwrite``.
    """
    if not uri or ":" not in uri:
        raise ConnectorError(
            f"application URI {uri!r} must be a URI such as urn:site:twin:collector"
        )
    if days < 1:
        raise ConnectorError(f"certificate validity must be at least 1 day, got {days}")
    folder = Path(out)
    paths = [folder / n for n in (CERT_DER, CERT_PEM, KEY_PEM)]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise ConnectorError(
            f"{', '.join(existing)} already exist(s): choose another folder or overwrite"
        )
    host = host or socket.gethostname()
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        name or uri,
        {},
        [x509.UniformResourceIdentifier(uri), x509.DNSName(host)],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        days=days,
    )
    folder.mkdir(parents=True, exist_ok=True)
    der, pem, key_path = paths
    _write(key_path, cert_gen.dump_private_key_as_pem(key), private=True)
    _write(der, cert.public_bytes(Encoding.DER))
    _write(pem, cert.public_bytes(Encoding.PEM))
    made = AppCertificate(
        cert=der,
        cert_pem=pem,
        key=key_path,
        uri=uri,
        host=host,
        not_after=cert.not_valid_after_utc,
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
    )
    log.info(
        "wrote certificate for %s (host %s, valid until %s) to %s", uri, host, made.not_after, der
    )
    return made


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` (mode 0600 for a private key, from the first byte on)."""
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # an existing file keeps its old mode through O_CREAT
