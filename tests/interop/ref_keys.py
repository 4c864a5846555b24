"""Checks that the reference implementation (MpGameServer 0.2.4) loads a key
pair, for the interop harness. Public API only.

    python ref_keys.py DIR/NAME.key DIR/NAME.pub

Loads both PEM files with EllipticCurvePrivateKey / EllipticCurvePublicKey,
checks that the public key derived from the private one is the one in the
.pub file, and that a signature made with the private key verifies with the
public one. Prints `KEYS ok <fingerprint>` or `KEYS FAIL <why>`.
"""

import hashlib
import sys

from mpgameserver import EllipticCurvePrivateKey, EllipticCurvePublicKey


def main():
    key_path, pub_path = sys.argv[1], sys.argv[2]
    try:
        with open(key_path) as f:
            key = EllipticCurvePrivateKey.fromPEM(f.read())
        with open(pub_path) as f:
            pub = EllipticCurvePublicKey.fromPEM(f.read())
        derived = key.getPublicKey().getBytes()
        if derived != pub.getBytes():
            raise ValueError("the public key of %s is not the one in %s" % (key_path, pub_path))
        data = b"mpgameserver interop key check"
        pub.verify(key.sign(data), data)
    except Exception as e:  # report every failure as one line
        print("KEYS FAIL %s: %s" % (type(e).__name__, e), flush=True)
        return 1
    print("KEYS ok", hashlib.sha256(derived).hexdigest(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
