#!/usr/bin/env python3
"""A small S3 server on loopback that can turn hostile, for tests/integration/hostile_inputs.sh.

In its honest mode it is an in-memory bucket with what Strata's remote uses: PUT (with
If-None-Match: *), GET (with Range), HEAD, DELETE, ListObjectsV2 and DeleteObjects. Signatures are
not checked: the faults are what is tested. GET /__mode/NAME switches the fault for every later
request (one at a time; the test sets them in turn):

  honest        as above
  loop-list     ListObjectsV2 answers IsTruncated=true with the same token and keys, forever
  empty-loop    ListObjectsV2 answers IsTruncated=true, no keys, the same token, forever
  huge-page     ListObjectsV2 answers 5,000 keys when 1,000 were asked for
  endless-body  a GET of packs/ sends an endless chunked body (Range ignored)
  stall         a GET of packs/ sends its headers and then nothing, until the client leaves
  trickle       a GET of packs/ sends its body at 2 KiB/s

Usage: hostile_s3.py PORT_FILE  (binds 127.0.0.1 on a free port and writes it to PORT_FILE).
"""
import http.server
import socketserver
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

OBJECTS = {}
LOCK = threading.Lock()
MODE = ["honest"]


def list_xml(keys, truncated, token):
    parts = ["<?xml version='1.0' encoding='UTF-8'?><ListBucketResult>"]
    for k in keys:
        parts.append("<Contents><Key>%s</Key><Size>%d</Size></Contents>"
                     % (k, len(OBJECTS.get(k, b""))))
    parts.append("<IsTruncated>%s</IsTruncated>" % ("true" if truncated else "false"))
    if truncated:
        parts.append("<NextContinuationToken>%s</NextContinuationToken>" % token)
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def split(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        path = urllib.parse.unquote(url.path).lstrip("/")
        bucket, _, key = path.partition("/")
        return bucket, key, query

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, data=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        bucket, key, _ = self.split()
        if not key:
            return self.send(200)
        with LOCK:
            data = OBJECTS.get(key)
        if data is None:
            return self.send(404)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()

    def do_PUT(self):
        bucket, key, _ = self.split()
        data = self.body()
        with LOCK:
            if self.headers.get("If-None-Match") == "*" and key in OBJECTS:
                return self.send(412, b"<Error><Code>PreconditionFailed</Code></Error>")
            if key:
                OBJECTS[key] = data
        self.send(200)

    def do_DELETE(self):
        bucket, key, _ = self.split()
        with LOCK:
            OBJECTS.pop(key, None)
        self.send(204)

    def do_POST(self):
        bucket, key, query = self.split()
        data = self.body()
        if "delete" in query:
            root = ET.fromstring(data)
            with LOCK:
                for k in root.iter("Key"):
                    OBJECTS.pop(k.text, None)
            return self.send(200, b"<DeleteResult></DeleteResult>")
        self.send(400)

    def do_GET(self):
        if self.path.startswith("/__mode/"):
            MODE[0] = self.path[len("/__mode/"):]
            return self.send(200, MODE[0].encode())
        bucket, key, query = self.split()
        if query.get("list-type") == "2":
            return self.list(query)
        mode = MODE[0]
        if key.startswith("packs/") and mode in ("endless-body", "stall", "trickle"):
            return self.hostile_get(mode, self.range_length())
        with LOCK:
            data = OBJECTS.get(key)
        if data is None:
            return self.send(404, b"<Error><Code>NoSuchKey</Code></Error>")
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            data = data[int(first):int(last) + 1]
            return self.send(206, data)
        self.send(200, data)

    def list(self, query):
        prefix = query.get("prefix", "")
        token = query.get("continuation-token", "")
        max_keys = int(query.get("max-keys", "1000"))
        mode = MODE[0]
        with LOCK:
            keys = sorted(k for k in OBJECTS if k.startswith(prefix))
        if mode == "loop-list":
            return self.send(200, list_xml(keys[:1] or [prefix + "x"], True, "again"))
        if mode == "empty-loop":
            return self.send(200, list_xml([], True, "again"))
        if mode == "huge-page":
            return self.send(200, list_xml([prefix + "k%06d" % i for i in range(5000)], False, ""))
        keys = [k for k in keys if k > token]
        page = keys[:max_keys]
        truncated = len(keys) > max_keys
        self.send(200, list_xml(page, truncated, page[-1] if truncated else ""))

    def range_length(self):
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            return int(last) - int(first) + 1
        return 1 << 20

    def hostile_get(self, mode, length):
        self.send_response(206 if mode != "endless-body" else 200)
        if mode == "endless-body":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))  # what was asked, never all of it
        self.end_headers()
        chunk = b"z" * 65536
        deadline = time.time() + 120  # the test server itself is bounded too
        try:
            while time.time() < deadline:
                if mode == "endless-body":
                    self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                elif mode == "trickle":
                    length -= 256
                    if length <= 0:
                        return  # (never reached at 2 KiB/s within a block's deadline)
                    self.wfile.write(b"z" * 256)
                    self.wfile.flush()
                    time.sleep(0.125)
                else:
                    time.sleep(0.2)
                    self.wfile.write(b"")
                    # a closed client shows as a failed write only when bytes go: probe it
                    self.connection.settimeout(0.0)
                    try:
                        if self.connection.recv(1) == b"":
                            return
                    except BlockingIOError:
                        pass
                    finally:
                        self.connection.settimeout(None)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    server = Server(("127.0.0.1", 0), Handler)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
