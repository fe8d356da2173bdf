"""An authenticating reverse proxy for sagesync's MLflow tests, on 127.0.0.1.

Every request is checked before it is forwarded to the real tracking server (--upstream):

* --mode sigv4: the Authorization header must be an AWS4-HMAC-SHA256 signature for
  --service/--region by --access-key. The proxy rebuilds the request from what it received
  (method, path and query, the headers named in SignedHeaders, the body), recomputes the
  signature with botocore's SigV4Auth and the secret key, and compares. It also checks that
  X-Amz-Content-SHA256 is the body's hash, that X-Amz-Date is within 5 minutes, that a
  session token (when --session-token is given) matches, and that every --require-header is
  present and signed.
* --mode token: the Authorization header must be "Bearer <--token>".

A request that fails a check gets 403 with the reason as JSON (MLflow's error shape); the
reason is also printed on stderr. Counts of accepted and rejected requests: GET /_proxy/stats.

Usage: python verifying_proxy.py --upstream http://127.0.0.1:PORT --mode sigv4|token [...]
Prints "READY <port>" once listening (it binds port 0 itself).
"""
import argparse
import datetime as dt
import hashlib
import hmac
import http.client
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0
        self.reasons = []


def parse_auth(value):
    if not value.startswith("AWS4-HMAC-SHA256 "):
        raise ValueError("not an AWS4-HMAC-SHA256 authorization")
    fields = {}
    for part in value[len("AWS4-HMAC-SHA256 "):].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    for k in ("Credential", "SignedHeaders", "Signature"):
        if k not in fields:
            raise ValueError("authorization lacks " + k)
    return fields


def check_sigv4(args, method, path, headers, body):
    auth = parse_auth(headers.get("authorization", ""))
    scope = auth["Credential"].split("/")
    if len(scope) != 5:
        raise ValueError("bad credential scope")
    key_id, date, region, service, term = scope
    if key_id != args.access_key:
        raise ValueError("unknown access key " + key_id)
    if (region, service, term) != (args.region, args.service, "aws4_request"):
        raise ValueError("scope %s/%s/%s, expected %s/%s/aws4_request" % (region, service, term, args.region, args.service))
    amz_date = headers.get("x-amz-date", "")
    when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    if abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) > 300:
        raise ValueError("x-amz-date too far from now")
    if not amz_date.startswith(date):
        raise ValueError("credential date differs from x-amz-date")
    if headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
        raise ValueError("x-amz-content-sha256 is not the body's hash")
    signed = auth["SignedHeaders"].split(";")
    for required in ["host", "x-amz-date", "x-amz-content-sha256"] + args.require_header:
        if required.lower() not in signed:
            raise ValueError("header %s is not signed" % required)
    if args.session_token is not None and headers.get("x-amz-security-token") != args.session_token:
        raise ValueError("wrong or missing session token")
    # Rebuild the request with exactly the signed headers and sign it with botocore.
    url = "http://%s%s" % (headers.get("host", ""), path)
    rebuilt = AWSRequest(method=method, url=url, data=body, headers={h: headers.get(h, "") for h in signed})
    signer = SigV4Auth(Credentials(args.access_key, args.secret_key, args.session_token), args.service, args.region)
    rebuilt.context["timestamp"] = amz_date
    canonical = signer.canonical_request(rebuilt)
    expected = signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)
    if not hmac.compare_digest(expected, auth["Signature"]):
        raise ValueError("signature mismatch; canonical request was:\n" + canonical)


def make_handler(args, stats):
    upstream = urllib.parse.urlsplit(args.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def reply(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/_proxy/stats":
                with stats.lock:
                    return self.reply(200, {"accepted": stats.accepted, "rejected": stats.rejected, "reasons": stats.reasons[-20:]})
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                if args.mode == "sigv4":
                    check_sigv4(args, self.command, self.path, headers, body)
                elif headers.get("authorization") != "Bearer " + args.token:
                    raise ValueError("missing or wrong bearer token")
            except Exception as e:
                with stats.lock:
                    stats.rejected += 1
                    stats.reasons.append(str(e))
                sys.stderr.write("rejected %s %s: %s\n" % (self.command, self.path, e))
                sys.stderr.flush()
                return self.reply(403, {"error_code": "PERMISSION_DENIED", "message": "verifying proxy: " + str(e).splitlines()[0]})
            with stats.lock:
                stats.accepted += 1
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            fwd = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "authorization"}
            fwd["Host"] = "%s:%d" % (upstream.hostname, upstream.port)
            try:
                conn.request(self.command, self.path, body=body if body else None, headers=fwd)
                resp = conn.getresponse()
                data = resp.read()
            except Exception as e:
                return self.reply(502, {"error_code": "BAD_GATEWAY", "message": "upstream: %s" % e})
            finally:
                conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = handle_any

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--mode", choices=["sigv4", "token"], required=True)
    ap.add_argument("--token", default="")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--service", default="sagemaker-mlflow")
    ap.add_argument("--access-key", default="")
    ap.add_argument("--secret-key", default="")
    ap.add_argument("--session-token", default=None)
    ap.add_argument("--require-header", action="append", default=[])
    args = ap.parse_args()
    stats = Stats()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args, stats))
    server.daemon_threads = True
    print("READY %d" % server.server_address[1], flush=True)
    # Stop when the test process closes stdin.
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:
        pass
    server.shutdown()


if __name__ == "__main__":
    main()
