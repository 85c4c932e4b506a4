"""``twin certs create``: a self-signed OPC-UA application certificate and its private key."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    certs = sub.add_parser("certs", help="OPC-UA application certificates")
    csub = certs.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    p = csub.add_parser(
        "create",
        help="make a self-signed application certificate and key",
        description="Write cert.der, cert.pem and key.pem (mode 600) into DIR: a self-signed "
        "RSA-2048 / SHA-256 certificate for client and server use whose subjectAltName holds "
        "the application URI. A client using it announces the same URI (servers check that); "
        "a server administrator trusts it by copying cert.der into the server's trust list.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the files to")
    p.add_argument(
        "--uri", required=True, metavar="URN", help="application URI, e.g. urn:site:twin:collector"
    )
    p.add_argument("--host", help="DNS name in the certificate (default: this machine's name)")
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    p.add_argument("--name", help="subject common name (default: the URI)")
    p.add_argument("--force", action="store_true", help="overwrite existing files in DIR")
    p.set_defaults(func=_create)


def _create(args: argparse.Namespace) -> int:
    from connectors.certs import create_certificate

    made = create_certificate(
        args.out,
        args.uri,
        host=args.host,
        days=args.days,
        name=args.name,
        overwrite=args.force,
    )
    print(
        f"certificate {made.cert} (and {made.cert_pem.name}), key {made.key}\n"
        f"application URI {made.uri}, host {made.host}, valid until {made.not_after:%Y-%m-%d}\n"
        f"SHA-256 {made.fingerprint}"
    )
    return 0
