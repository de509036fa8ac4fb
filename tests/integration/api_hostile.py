#!/usr/bin/env python3
"""Unauthenticated HTTP clients against strata-nbd --api-listen (issue 28 items 2 and 3), each
measured: how long the server took to refuse, its RSS peak, and whether a legitimate boto3 client
was served meanwhile. Prints one line per case; exits 1 on the first bound that does not hold.

usage: api_hostile.py ENDPOINT SERVER_PID
"""
import os
import socket
import subprocess
import sys
import threading
import time

import boto3
import botocore.config

endpoint, server_pid = sys.argv[1], int(sys.argv[2])
host, port = endpoint.split("//")[1].split(":")
port = int(port)


def hwm_mib():
    with open("/proc/%d/status" % server_pid) as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) // 1024
    return -1


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def connect():
    s = socket.create_connection((host, port), timeout=10)
    return s


def status_of(s):
    """The HTTP status the server answered on `s`, or None if it closed without one."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    if not data.startswith(b"HTTP/1."):
        return None
    return int(data.split()[1])


ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1",
                   config=botocore.config.Config(retries={"max_attempts": 1},
                                                 connect_timeout=5, read_timeout=5))


def legit_ms():
    t0 = time.time()
    ec2.describe_availability_zones()
    return int((time.time() - t0) * 1000)


baseline = [legit_ms() for _ in range(5)]


# 1. A chunked body of 256 MiB, unauthenticated: refused from its headers (411), nothing read.
t0 = time.time()
s = connect()
s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
          b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
sent = 0
code = None
try:
    s.settimeout(0.05)
    chunk = b"%x\r\n" % (1 << 20) + b"a" * (1 << 20) + b"\r\n"
    while sent < (256 << 20):
        s.sendall(chunk)
        sent += 1 << 20
except (BrokenPipeError, ConnectionResetError, socket.timeout):
    pass
s.settimeout(5)
code = status_of(s)
s.close()
if code not in (411, None):
    fail("chunked body: HTTP %s" % code)
print("ok: a chunked 256 MiB body: HTTP %s after %d MiB sent, %d ms; RSS peak %d MiB"
      % (code, sent >> 20, (time.time() - t0) * 1000, hwm_mib()))

# 2. Four clients announcing 256 MiB each: 413 from the headers, the body never read.
codes = []


def big():
    c = connect()
    c.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (256 << 20))
    pushed = 0
    c.settimeout(0.05)
    try:
        while pushed < (256 << 20):
            c.sendall(b"a" * (1 << 20))
            pushed += 1 << 20
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    c.settimeout(5)
    codes.append((status_of(c), pushed >> 20))
    c.close()


t0 = time.time()
threads = [threading.Thread(target=big) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if any(c not in (413, None) for c, _ in codes):
    fail("declared 256 MiB bodies: %s" % codes)
print("ok: 4 bodies of 256 MiB declared: HTTP %s, at most %d MiB accepted by the socket before "
      "the close, %d ms; RSS peak %d MiB" % (sorted(set(c for c, _ in codes)),
                                           max(p for _, p in codes), (time.time() - t0) * 1000,
                                           hwm_mib()))

# 3. 200,000 headers: the connection's memory bound ends it.
t0 = time.time()
s = connect()
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
n = 0
try:
    s.settimeout(0.05)
    while n < 200000:
        s.sendall(b"X-H%d: v\r\n" % n)
        n += 1
except (BrokenPipeError, ConnectionResetError, socket.timeout):
    pass
s.settimeout(5)
code = status_of(s)
s.close()
if n >= 200000 and code is None:
    fail("200,000 headers were all taken")
print("ok: 200,000 headers: HTTP %s after %d, %d ms; RSS peak %d MiB"
      % (code, n, (time.time() - t0) * 1000, hwm_mib()))

# Authenticated edge cases (issue 28 item 9), each once.
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import urllib.error
import urllib.request


def code_of(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return "OK"


ebs = boto3.client("ebs", endpoint_url=endpoint, region_name="us-east-1",
                   config=botocore.config.Config(retries={"max_attempts": 1}))
got = code_of(lambda: ebs.start_snapshot(VolumeSize=2**34 + 1))
if got != "ValidationException":
    fail("StartSnapshot VolumeSize 2^34+1: %s" % got)
first = ebs.start_snapshot(VolumeSize=1, ClientToken="hostile-token")
again = ebs.start_snapshot(VolumeSize=1, ClientToken="hostile-token")
if again["SnapshotId"] != first["SnapshotId"]:
    fail("StartSnapshot retried with its ClientToken made another upload")
got = code_of(lambda: ebs.start_snapshot(VolumeSize=2, ClientToken="hostile-token"))
if got != "ConflictException":
    fail("StartSnapshot's ClientToken with other parameters: %s" % got)
ids = ["vol-%017x" % i for i in range(400)]
got = code_of(lambda: ec2.describe_volumes(VolumeIds=ids))
if got != "InvalidVolume.NotFound":
    fail("describe-volumes of 400 ids (a 12 KiB form): %s" % got)


def signed_post(body):
    creds = botocore.credentials.Credentials(os.environ["AWS_ACCESS_KEY_ID"],
                                             os.environ["AWS_SECRET_ACCESS_KEY"])
    req = botocore.awsrequest.AWSRequest(
        method="POST", url=endpoint + "/", data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    botocore.auth.SigV4Auth(creds, "ec2", "us-east-1").add_auth(req)
    try:
        r = urllib.request.urlopen(urllib.request.Request(req.url, data=body,
                                                          headers=dict(req.headers)))
        return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


vol = ec2.create_volume(Size=1, AvailabilityZone="us-east-1a")["VolumeId"]
status, text = signed_post(("Action=CreateTags&Version=2016-11-15&ResourceId.1=%s"
                            "&Tag.1.Key=k&Tag.1.Value=%%FF%%FEbad" % vol).encode())
if status != 400 or "not valid UTF-8" not in text:
    fail("a tag of invalid UTF-8: HTTP %d %s" % (status, text[:200]))
if ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [vol]}])["Tags"]:
    fail("a tag of invalid UTF-8 was stored")
ec2.delete_volume(VolumeId=vol)
print("ok: StartSnapshot VolumeSize 2^34+1 and a reused ClientToken refused, 400 ids in a form, "
      "a tag of invalid UTF-8 refused (nothing stored)", flush=True)

# 4. 48 slowloris connections (a header byte each per second), from another process so that the
# measured client shares no interpreter with them: legitimate calls are served meanwhile.
DRIP = """
import socket, sys, time
slow = []
for _ in range(48):
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    c.sendall(b"POST / HTTP/1.1\\r\\nHost: x\\r\\n")
    slow.append(c)
print("connected", flush=True)
for _ in range(int(sys.argv[3])):
    for c in slow:
        try:
            c.sendall(b"X")
        except OSError:
            pass
    time.sleep(1)
"""
hold_s = int(os.environ.get("SLOWLORIS_HOLD_S", "0"))
dripper = subprocess.Popen([sys.executable, "-c", DRIP, host, str(port), str(hold_s + 10)],
                           stdout=subprocess.PIPE, text=True)
if dripper.stdout.readline().strip() != "connected":
    fail("the slowloris process did not connect")
time.sleep(1.5)
times = [legit_ms() for _ in range(5)]
if max(times) > 2000:
    fail("a legitimate call took %d ms under slowloris" % max(times))
print("ok: 48 slowloris connections: 5 legitimate describe-availability-zones took %s ms "
      "(%s ms before any attack); RSS peak %d MiB" % (times, baseline, hwm_mib()), flush=True)
# Left running: the caller sends SIGTERM now and times the exit.
with open(os.environ.get("SLOWLORIS_READY", "/dev/null"), "w") as f:
    f.write("ready")
time.sleep(hold_s)
dripper.kill()
dripper.wait()
