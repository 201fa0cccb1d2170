"""A private certificate authority and a broker certificate for the local stack's TLS
listeners, in the PEM files Kafka (``ssl.keystore.type=PEM``) and librdkafka read."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825
# A certificate this close to its end is made again at the next `up`.
RENEW_BEFORE = dt.timedelta(days=30)
HOSTS = ("localhost",)
ADDRESSES = ("127.0.0.1",)


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate (PEM) and key. Only the certificate is ever written down."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_authority(name: str = "cdc local stack CA") -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def server_keystore(ca: Authority) -> tuple[bytes, bytes]:
    """The broker's PKCS#8 key and its certificate chain (its certificate, then the CA's), as
    Kafka's PEM key store takes them (``ssl.keystore.key``, ``ssl.keystore.certificate.chain``).
    Valid for ``localhost`` and ``127.0.0.1``, so clients can verify the host name.

    The key is not encrypted: Kafka reads an encrypted PKCS#8 key only with the legacy PBES1
    ciphers (Java 17 has no PBES2 ``SecretKeyFactory``); the file is 0600 instead."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    san = [x509.DNSName(h) for h in HOSTS] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in ADDRESSES
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTS[0])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM) + ca.pem


def needs_renewal(key: Path, chain: Path, ca: Path) -> bool:
    """Whether the files are missing, unreadable, or end within ``RENEW_BEFORE``."""
    try:
        serialization.load_pem_private_key(key.read_bytes(), password=None)
        certs = x509.load_pem_x509_certificates(chain.read_bytes())
        authority = x509.load_pem_x509_certificate(ca.read_bytes())
    except (OSError, ValueError):
        return True
    end = min(c.not_valid_after_utc for c in (*certs, authority))
    return end - _now() < RENEW_BEFORE
