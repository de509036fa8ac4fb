#!/usr/bin/env python3
"""A KMS endpoint on loopback that is hostile in one way, for kms_interop.sh: what a Strata
server asking it for its root key (--kms-root-key-from-kms) must survive without hanging,
crashing or using what it sent.

  stall     accepts, reads the request, never answers
  endless   answers 200 with an endless body
  garbage   answers 200 with bytes that are not JSON
  shortkey  answers 200 with a Plaintext of 5 bytes (and a CiphertextBlob)
  numkeyid  answers 200 with a good 32-byte Plaintext, but a KeyId that is a number
  redirect  answers 307 to another address

Usage: hostile_kms.py MODE PORT_FILE  (binds 127.0.0.1 on a free port, writes it to PORT_FILE).
"""
import http.server
import socketserver
import sys
import time

MODE = sys.argv[1]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if MODE == "stall":
            time.sleep(3600)
        elif MODE == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b'{"Plaintext":"' + b"A" * 65536
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass  # the client hung up: what it should do
        elif MODE == "redirect":
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:9/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = (b"\x00\xffnot json" if MODE == "garbage" else
                    b'{"Plaintext":"' + b"A" * 43 + b'=","CiphertextBlob":"AAAA","KeyId":7}'
                    if MODE == "numkeyid" else
                    b'{"Plaintext":"AAAAAAA=","CiphertextBlob":"AAAA","KeyId":"k"}')
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
with open(sys.argv[2], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
