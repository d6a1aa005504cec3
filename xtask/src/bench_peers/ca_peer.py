"""Peers for `cargo xtask bench-peers --only ca` (Python `cryptography`).

gen DIR N KIND       write N CSRs (KIND p256: a fresh key each; rsa2048: one key,
                     N subjects) and a P-256 CA (ca.key PKCS#8, ca.pem) into DIR
sign CA_KEY CA_PEM CSR_DIR
                     validate (signature) and sign every CSR with the same
                     contents eos-sec issues, in one process; PEMs on stdout
"""
import datetime
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def gen(out, n, kind):
    os.makedirs(out, exist_ok=True)
    csr_dir = os.path.join(out, "csr")
    os.makedirs(csr_dir, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    with open(os.path.join(out, "ca.key"), "wb") as f:
        f.write(ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with open(os.path.join(out, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    shared = rsa.generate_private_key(65537, 2048) if kind == "rsa2048" else None
    for i in range(n):
        key = shared if shared is not None else ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"user{i}")]))
            .sign(key, hashes.SHA256())
        )
        with open(os.path.join(csr_dir, f"{i:06}.csr"), "wb") as f:
            f.write(csr.public_bytes(serialization.Encoding.PEM))


def sign(ca_key_path, ca_pem_path, csr_dir):
    with open(ca_key_path, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    with open(ca_pem_path, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    now = datetime.datetime.now(datetime.timezone.utc)
    out = sys.stdout.buffer
    for i, name in enumerate(sorted(os.listdir(csr_dir))):
        with open(os.path.join(csr_dir, name), "rb") as f:
            csr = x509.load_pem_x509_csr(f.read())
        if not csr.is_signature_valid:
            raise SystemExit(f"{name}: bad signature")
        user = f"user{i}"
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bench"),
                x509.NameAttribute(NameOID.COMMON_NAME, user),
            ]))
            .issuer_name(ca.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:entityos:space:bench:user:{user}")]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        out.write(cert.public_bytes(serialization.Encoding.PEM))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sign(sys.argv[2], sys.argv[3], sys.argv[4])
