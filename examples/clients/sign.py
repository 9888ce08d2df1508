# Python 3 (standard library only): sign a call with the MD5 scheme and send it to chinaport-proxy.
import hashlib
import json
import os
import time
import urllib.error
import urllib.request

PROXY = os.environ.get("PROXY_URL", "http://127.0.0.1:8780")
APP_SECRET = os.environ.get("APP_SECRET", "your-secret-key")


def call_ukey(method, args=None):
    path = "/rpc"
    body = json.dumps({"_method": method, "args": args or {}}, ensure_ascii=False).encode("utf-8")
    timestamp = str(int(time.time() * 1000))
    plaintext = b"POST" + path.encode() + timestamp.encode() + body + APP_SECRET.encode("utf-8")
    signature = hashlib.md5(plaintext).hexdigest()
    request = urllib.request.Request(PROXY + path, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "X-Timestamp": timestamp,
        "X-Signature": signature,
    })
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["X-Request-ID"], json.load(response)
    except urllib.error.HTTPError as error:  # 4xx/5xx still carry a JSON body
        return error.code, error.headers["X-Request-ID"], json.load(error)


status, request_id, answer = call_ukey("cus-sec_SpcSignDataAsPEM", {"inData": "报关数据 Hello"})
print(json.dumps({"status": status, "requestId": request_id, "body": answer}, ensure_ascii=False))
