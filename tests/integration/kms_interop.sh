#!/usr/bin/env bash
# The pool's KMS (docs/kms.md) driven by the real AWS CLI (Debian's awscli) over
# strata-nbd --api-listen: keys, aliases, envelope encryption with encryption contexts,
# rotation (old ciphertexts still decrypt), disable/enable, scheduled deletion and its cancel,
# KMS's exception names; the root key: refused when readable by others or inside the pool, a
# wrong one refused at start, and no key material in the pool's files in the clear; a server
# without a root key answers every KMS call with why.
#
# usage: kms_interop.sh BUILD_DIR   (exit 77 = skipped)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools python3
cli pool create --capacity 1GiB >/dev/null
aws_endpoint_setup

# ---- no root key: the KMS says why, the rest of the API works
start --api-listen "127.0.0.1:$port"
kms_refused KMSInternalException list-keys
out=$(kms list-keys 2>&1 || true)
[[ $out == *"--kms-root-key"* ]] || fail "no-KMS error does not say what to do: $out"
stop_server
pass "without a root key every KMS call says how to give one"

# ---- the root key's file is checked before it is used
head -c 32 /dev/urandom >"$work/root.key"
chmod 644 "$work/root.key"
if "$server" --pool "$pool" --socket "$work/sock" --kms-root-key "$work/root.key" 2>"$work/err"; then
  fail "a world-readable root key was accepted"
fi
grep -q "0600" "$work/err" || fail "world-readable root key: $(cat "$work/err")"
cp "$work/root.key" "$pool/root.key" && chmod 600 "$pool/root.key"
if "$server" --pool "$pool" --socket "$work/sock" --kms-root-key "$pool/root.key" 2>"$work/err"; then
  fail "a root key inside the pool was accepted"
fi
grep -q "inside the pool" "$work/err" || fail "root key in the pool: $(cat "$work/err")"
rm -f "$pool/root.key"
chmod 600 "$work/root.key"
pass "a root key readable by others, or inside the pool, is refused"

start --api-listen "127.0.0.1:$port" --kms-root-key "$work/root.key"
key=$(kms create-key --description "volumes of team a" --tags TagKey=team,TagValue=a \
  --query KeyMetadata.KeyId --output text)
[[ $key =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] || fail "create-key: $key"
[[ $(kms describe-key --key-id "$key" --query 'KeyMetadata.[KeyState,Enabled,KeySpec,Arn]' --output text) == \
  "Enabled"$'\t'"True"$'\t'"SYMMETRIC_DEFAULT"$'\t'"arn:aws:kms:us-east-1:000000000000:key/$key" ]] ||
  fail "describe-key"
kms create-alias --alias-name alias/team-a --target-key-id "$key"
[[ $(kms describe-key --key-id alias/team-a --query KeyMetadata.KeyId --output text) == "$key" ]] ||
  fail "describe-key by alias"
[[ $(kms list-aliases --key-id "$key" --query 'Aliases[0].AliasName' --output text) == alias/team-a ]] ||
  fail "list-aliases --key-id"
[[ $(kms list-keys --query 'length(Keys)' --output text) == 1 ]] || fail "list-keys"
[[ $(kms list-resource-tags --key-id "$key" --query 'Tags[0].TagValue' --output text) == a ]] ||
  fail "list-resource-tags"
kms_refused AlreadyExistsException create-alias --alias-name alias/team-a --target-key-id "$key"
kms_refused InvalidAliasNameException create-alias --alias-name alias/aws/mine --target-key-id "$key"
kms_refused NotFoundException describe-key --key-id alias/nope
kms_refused NotFoundException describe-key --key-id 00000000-0000-0000-0000-000000000000
pass "create-key, describe-key (id, ARN, alias), aliases, list-keys, tags, KMS's exceptions"

# ---- envelope encryption
printf 'a secret of known bytes' >"$work/plain"
kms encrypt --key-id alias/team-a --plaintext "fileb://$work/plain" \
  --encryption-context purpose=test --query CiphertextBlob --output text | base64 -d >"$work/blob"
kms decrypt --ciphertext-blob "fileb://$work/blob" --encryption-context purpose=test \
  --query Plaintext --output text | base64 -d >"$work/back"
cmp "$work/plain" "$work/back" || fail "decrypt gave other bytes"
grep -q "known bytes" "$work/blob" && fail "the ciphertext holds the plaintext"
kms_refused InvalidCiphertextException decrypt --ciphertext-blob "fileb://$work/blob" \
  --encryption-context purpose=other
python3 -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); b[60]^=1; open(sys.argv[2],"wb").write(b)' \
  "$work/blob" "$work/tampered"
kms_refused InvalidCiphertextException decrypt --ciphertext-blob "fileb://$work/tampered" \
  --encryption-context purpose=test
dk=$(kms generate-data-key --key-id "$key" --key-spec AES_256)
python3 -c 'import json,sys,base64; d=json.loads(sys.argv[1]); assert len(base64.b64decode(d["Plaintext"]))==32' "$dk" ||
  fail "generate-data-key"
echo "$dk" | python3 -c 'import json,sys,base64; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin)["CiphertextBlob"]))' >"$work/dk.blob"
[[ $(kms decrypt --ciphertext-blob "fileb://$work/dk.blob" --query Plaintext --output text) == \
  $(echo "$dk" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Plaintext"])') ]] ||
  fail "a data key's blob decrypts to another key"
[[ $(kms generate-data-key-without-plaintext --key-id "$key" --number-of-bytes 64 --query 'Plaintext' --output text) == None ]] ||
  fail "generate-data-key-without-plaintext returned a plaintext"
key2=$(kms create-key --query KeyMetadata.KeyId --output text)
kms re-encrypt --ciphertext-blob "fileb://$work/blob" --source-encryption-context purpose=test \
  --destination-key-id "$key2" --query CiphertextBlob --output text | base64 -d >"$work/blob2"
kms_refused IncorrectKeyException decrypt --ciphertext-blob "fileb://$work/blob2" --key-id "$key"
kms decrypt --ciphertext-blob "fileb://$work/blob2" --query Plaintext --output text | base64 -d |
  cmp - "$work/plain" || fail "re-encrypt"
pass "encrypt/decrypt with a context, tampering and a wrong context refused, data keys, re-encrypt"

# ---- rotation (Debian's AWS CLI 2.9 predates rotation periods and rotate-key-on-demand: the
# rotation itself, and old ciphertexts after it, are in kms_test with a moved clock)
kms enable-key-rotation --key-id "$key"
[[ $(kms get-key-rotation-status --key-id "$key" --query KeyRotationEnabled --output text) == True ]] ||
  fail "get-key-rotation-status"
kms disable-key-rotation --key-id "$key"
[[ $(kms get-key-rotation-status --key-id "$key" --query KeyRotationEnabled --output text) == False ]] ||
  fail "disable-key-rotation"
pass "enable-key-rotation, get-key-rotation-status, disable-key-rotation"

# ---- disable, enable, schedule deletion, cancel
kms disable-key --key-id "$key"
kms_refused DisabledException encrypt --key-id "$key" --plaintext "fileb://$work/plain"
kms_refused DisabledException decrypt --ciphertext-blob "fileb://$work/blob" --encryption-context purpose=test
kms enable-key --key-id "$key"
kms decrypt --ciphertext-blob "fileb://$work/blob" --encryption-context purpose=test >/dev/null || fail "enable-key"
kms_refused ValidationException schedule-key-deletion --key-id "$key" --pending-window-in-days 3
[[ $(kms schedule-key-deletion --key-id "$key" --pending-window-in-days 7 --query KeyState --output text) == PendingDeletion ]] ||
  fail "schedule-key-deletion"
kms_refused KMSInvalidStateException encrypt --key-id "$key" --plaintext "fileb://$work/plain"
kms cancel-key-deletion --key-id "$key" >/dev/null
[[ $(kms describe-key --key-id "$key" --query KeyMetadata.KeyState --output text) == Disabled ]] ||
  fail "a cancelled deletion leaves the key Disabled"
kms enable-key --key-id "$key"
pass "disable/enable, schedule-key-deletion (7-30 days) and cancel, with KMS's exceptions"

# ---- the strata CLI: the same verbs, through the running server, the same replies
python3 - "$(kms describe-key --key-id alias/team-a)" "$(cli kms describe-key --key-id alias/team-a)" <<'PY' ||
import json, sys
aws, ours = (json.loads(a)["KeyMetadata"] for a in sys.argv[1:3])
aws["CreationDate"] = aws["CreationDate"][:23]  # 2026-...T18:28:50.685000+00:00 vs ...685Z
ours["CreationDate"] = ours["CreationDate"][:23]
if aws != ours:
    print("aws:  ", json.dumps(aws, sort_keys=True)); print("ours: ", json.dumps(ours, sort_keys=True))
    sys.exit(1)
PY
  fail "strata kms describe-key differs from aws kms describe-key"
cli kms encrypt --key-id alias/team-a --plaintext "fileb://$work/plain" --encryption-context a=b \
  --query CiphertextBlob --output text | base64 -d >"$work/cli.blob"
kms decrypt --ciphertext-blob "fileb://$work/cli.blob" --encryption-context a=b --query Plaintext \
  --output text | base64 -d | cmp - "$work/plain" || fail "a blob from strata kms encrypt"
refused "unrecoverable" kms schedule-key-deletion --key-id "$key2"
[[ $(kms describe-key --key-id "$key2" --query KeyMetadata.KeyState --output text) == Enabled ]] ||
  fail "schedule-key-deletion without --confirm changed the key"
cli kms schedule-key-deletion --key-id "$key2" --pending-window-in-days 7 --confirm >/dev/null
refused "NotFoundException" kms describe-key --key-id alias/none
pass "strata kms: replies equal aws kms's, blobs interchangeable, deletion needs --confirm"

# ---- durable, and nothing in the clear; a wrong root key is refused
stop_server
start --api-listen "127.0.0.1:$port" --kms-root-key "$work/root.key"
kms decrypt --ciphertext-blob "fileb://$work/blob" --encryption-context purpose=test --query Plaintext \
  --output text | base64 -d | cmp - "$work/plain" || fail "decrypt after a restart"
stop_server
# The CLI on the pool itself (no server): the root key from --kms-root-key or the environment
refused "no KMS here" kms list-keys
[[ $(STRATA_KMS_ROOT_KEY=$work/root.key cli kms decrypt --ciphertext-blob "fileb://$work/blob" \
  --encryption-context purpose=test --query Plaintext --output text | base64 -d) == "$(cat "$work/plain")" ]] ||
  fail "strata kms decrypt with \$STRATA_KMS_ROOT_KEY, no server"
[[ $("$strata" --pool "$pool" --kms-root-key "$work/root.key" kms list-aliases --query 'Aliases[0].AliasName' --output text) == alias/team-a ]] ||
  fail "strata --kms-root-key kms list-aliases, no server"
python3 - "$pool" "$(echo "$dk" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Plaintext"])')" <<'PY' || fail "a data key's plaintext is in the pool"
import base64, os, sys
needle = base64.b64decode(sys.argv[2])
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(root, f)
        if os.path.isfile(p) and needle in open(p, "rb").read():
            sys.exit(1)
PY
head -c 32 /dev/urandom >"$work/wrong.key" && chmod 600 "$work/wrong.key"
if "$server" --pool "$pool" --socket "$work/sock" --kms-root-key "$work/wrong.key" 2>"$work/err"; then
  fail "a wrong root key was accepted"
fi
grep -q "wrong KMS root key" "$work/err" || fail "wrong root key: $(cat "$work/err")"
pass "keys survive a restart; no data key in the pool's files; a wrong root key is refused at start"

# ---- a root key kept by another KMS: this server's, for a second pool and a second server
start --api-listen "127.0.0.1:$port" --kms-root-key "$work/root.key"
root_key=$(kms create-key --description "wraps pool b's root key" --query KeyMetadata.KeyId --output text)
pool_b=$work/pool-b
"$strata" --pool "$pool_b" pool create --capacity 1GiB >/dev/null
keys_b=$("$strata" --pool "$pool_b" create-access-key)
b_env=(AWS_ACCESS_KEY_ID="$(echo "$keys_b" | field AccessKeyId)"
  AWS_SECRET_ACCESS_KEY="$(echo "$keys_b" | field SecretAccessKey)")
port_b=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pid_b=
trap '[[ -n "$pid_b" ]] && kill -9 "$pid_b" 2>/dev/null; cleanup' EXIT
start_b() {  # (the server's own calls to the external KMS use this shell's keys: pool a's)
  rm -f "$work/sock-b" "$pool_b/control.sock"
  "$server" --pool "$pool_b" --socket "$work/sock-b" --api-listen "127.0.0.1:$port_b" \
    --kms-root-key-from-kms "$root_key" --kms-endpoint-url "$endpoint" 2>"$work/log-b" &
  pid_b=$!
  for _ in $(seq 400); do
    [[ -S "$work/sock-b" ]] && return 0
    kill -0 "$pid_b" 2>/dev/null || { pid_b=; return 1; }
    sleep 0.05
  done
  return 1
}
stop_b() { kill -TERM "$pid_b"; wait "$pid_b" || true; pid_b=; }
kms_b() { env "${b_env[@]}" "$aws_cli" --endpoint-url "http://127.0.0.1:$port_b" kms "$@"; }
start_b || fail "server b with an external root key: $(cat "$work/log-b")"
key_b=$(kms_b create-key --query KeyMetadata.KeyId --output text)
kms_b encrypt --key-id "$key_b" --plaintext "fileb://$work/plain" --query CiphertextBlob --output text |
  base64 -d >"$work/blob-b"
stop_b
start_b || fail "server b restarting: $(cat "$work/log-b")"
kms_b decrypt --ciphertext-blob "fileb://$work/blob-b" --query Plaintext --output text | base64 -d |
  cmp - "$work/plain" || fail "pool b's keys after a restart with the external root key"
stop_b
kms disable-key --key-id "$root_key"
start_b && fail "server b started with its external root key disabled"
grep -q "DisabledException" "$work/log-b" || fail "external key disabled: $(cat "$work/log-b")"
kms enable-key --key-id "$root_key"
start_b || fail "server b after the external key was enabled again: $(cat "$work/log-b")"
stop_b
if "$server" --pool "$pool_b" --socket "$work/sock-b" --kms-root-key-from-kms "$root_key" \
  --kms-endpoint-url "http://127.0.0.1:1" 2>"$work/log-b"; then
  fail "server b started with its external KMS unreachable"
fi
grep -q "KMS http://127.0.0.1:1" "$work/log-b" || fail "unreachable external KMS: $(cat "$work/log-b")"
pass "a root key kept by another KMS: made once, unwrapped at each start; disabled there, refused here"

# ---- a hostile external KMS: every start fails, promptly, saying why; nothing is used
for mode in stall endless garbage shortkey numkeyid redirect; do
  rm -f "$work/hostile.port"
  python3 "$(dirname "$0")/hostile_kms.py" "$mode" "$work/hostile.port" &
  hostile=$!
  for _ in $(seq 100); do [[ -s "$work/hostile.port" ]] && break; sleep 0.05; done
  pool_c=$work/pool-c-$mode
  "$strata" --pool "$pool_c" pool create --capacity 1GiB >/dev/null
  began=$(date +%s)
  if timeout 60 "$server" --pool "$pool_c" --socket "$work/sock-c" --kms-timeout-ms 2000 \
    --kms-root-key-from-kms k --kms-endpoint-url "http://127.0.0.1:$(cat "$work/hostile.port")" \
    2>"$work/log-c"; then
    kill "$hostile"
    fail "a server started on a $mode KMS"
  fi
  kill "$hostile" 2>/dev/null || true
  took=$(($(date +%s) - began))
  ((took <= 10)) || fail "$mode KMS: the start took ${took}s to fail"
  grep -q "KMS\|root key" "$work/log-c" || fail "$mode KMS: $(cat "$work/log-c")"
  echo "  $mode: $(tail -1 "$work/log-c")"
done
pass "a stalling, endless, garbage, short-key, odd-typed or redirecting KMS: the start fails within 10 s, saying why"
