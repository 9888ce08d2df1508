"""RFC 9421 with an independent implementation (pip http-message-signatures), for tests/keys.rs.

  sign   URL BODY KEYID PRIVATE_PEM   -> prints the headers (JSON) of a POST signed with
                                         rsa-v1_5-sha256 over @method @path @authority content-digest
  verify URL BODY HEADERS_JSON PUBLIC_PEM -> exits 0 when the headers' signature verifies
"""
import datetime
import json
import sys
import uuid

import requests
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, MappingKeyResolver, algorithms

COMPONENTS = ("@method", "@path", "@authority", "content-digest")


def message(url, body, headers):
    return requests.Request("POST", url, data=body.encode(), headers=headers).prepare()


def main():
    mode, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "sign":
        keyid, pem = sys.argv[4], open(sys.argv[5], "rb").read()
        msg = message(url, body, {"Content-Type": "application/json"})
        signer = HTTPMessageSigner(
            signature_algorithm=algorithms.RSA_V1_5_SHA256,
            key_resolver=MappingKeyResolver(public_keys={}, private_keys={keyid: pem}),
        )
        signer.sign(msg, key_id=keyid, nonce=uuid.uuid4().hex, label="sig1",
                    covered_component_ids=COMPONENTS, body=body.encode())
        print(json.dumps({k: v for k, v in msg.headers.items()
                          if k.lower() in ("content-digest", "signature-input", "signature")}))
    else:
        headers, pem = json.loads(sys.argv[4]), open(sys.argv[5], "rb").read()
        keyid = headers["Signature-Input"].split('keyid="')[1].split('"')[0]
        msg = message(url, body, headers)
        verifier = HTTPMessageVerifier(
            signature_algorithm=algorithms.RSA_V1_5_SHA256,
            key_resolver=MappingKeyResolver(public_keys={keyid: pem}, private_keys={}),
        )
        verifier.allow_label_only_selection = True
        verifier.verify(msg, expect_label="sig1", require_components=COMPONENTS,
                        max_age=datetime.timedelta(minutes=5), body=body.encode())
        print("verified")


main()
