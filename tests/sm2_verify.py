"""Second, independent SM2 check with Python's gmssl: verifies a base64 raw r||s signature over
DATA_FILE with the public key of CERT_FILE (base64 DER), SM3 with the default user ID
1234567812345678. Exit 0 when it verifies, 1 when not. The public key is cut out of the DER by
the SM2 curve OID that precedes it, so that no code of ours or of OpenSSL takes part."""
import base64
import sys

from gmssl import sm2

cert = base64.b64decode(open(sys.argv[1]).read())
data = open(sys.argv[2], "rb").read()
sig = base64.b64decode(open(sys.argv[3]).read().strip())
# subjectPublicKeyInfo: ... OID 1.2.156.10197.1.301, then BIT STRING (66 bytes: 0x00, 0x04, x, y)
curve = bytes.fromhex("06082a811ccf5501822d")
at = cert.index(curve) + len(curve)
assert cert[at] == 0x03 and cert[at + 1] == 0x42 and cert[at + 2] == 0 and cert[at + 3] == 4, "no SM2 point"
point = cert[at + 4 : at + 4 + 64]
verifier = sm2.CryptSM2(private_key=None, public_key=point.hex())
sys.exit(0 if verifier.verify_with_sm3(sig.hex(), data) else 1)
