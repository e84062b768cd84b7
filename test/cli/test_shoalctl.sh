#!/usr/bin/env bash
# shoalctl's offline commands run as a user would run them:
#   validate rejects every file of the broken corpus with located messages and accepts the
#   example; keygen writes a 0600 key and rotates it; plan --json gives an owner per bucket.
# Usage: test_shoalctl.sh SHOALCTL SOURCE_DIR
set -uo pipefail
shoalctl=$1
src=$2
failures=0
checks=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { checks=$((checks + 1)); }

command -v jq >/dev/null || { echo "FAIL: jq is missing (test/setup-deps.sh installs it)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Every broken definition is rejected, exit 1, every line located as file:line:column.
corpus=("$src"/test/configs/bad/*.yaml)
((${#corpus[@]} >= 20)) || fail "corpus has only ${#corpus[@]} files"
for f in "${corpus[@]}"; do
  check
  out=$("$shoalctl" validate "$f" 2>&1)
  rc=$?
  if [[ $rc -ne 1 ]]; then
    fail "validate $f exited $rc, expected 1"
    continue
  fi
  if [[ -z "$out" ]]; then
    fail "validate $f printed no error"
    continue
  fi
  while IFS= read -r line; do
    [[ "$line" == "$f":[0-9]*:[0-9]*:\ * ]] || fail "unlocated message for $f: $line"
  done <<<"$out"
done
echo "validate: ${#corpus[@]} broken definitions rejected with located messages"

# 2. The example is accepted: in place without a key (a workstation), and beside a real key.
check
"$shoalctl" validate --no-key "$src/etc/cluster.yaml" >/dev/null || fail "example rejected (--no-key)"
check
out=$("$shoalctl" validate "$src/etc/cluster.yaml" 2>&1) && [[ ! -e "$src/etc/cluster.key" ]] &&
  fail "example accepted although its key file is missing"
cp "$src/etc/cluster.yaml" "$tmp/cluster.yaml"

# 3. keygen: new file with mode 0600, refuses to overwrite, rotation keeps it valid.
check
"$shoalctl" keygen "$tmp/cluster.key" >/dev/null || fail "keygen failed"
mode=$(stat -c %a "$tmp/cluster.key")
[[ "$mode" == 600 ]] || fail "key file mode is $mode, expected 600"
check
"$shoalctl" keygen "$tmp/cluster.key" >/dev/null 2>&1 && fail "keygen overwrote an existing key"
check
"$shoalctl" validate "$tmp/cluster.yaml" >/dev/null || fail "example with its key rejected"
check
"$shoalctl" keygen --add "$tmp/cluster.key" >/dev/null || fail "keygen --add failed"
"$shoalctl" keygen --set-primary 2 "$tmp/cluster.key" >/dev/null || fail "keygen --set-primary failed"
"$shoalctl" keygen --remove 1 "$tmp/cluster.key" >/dev/null || fail "keygen --remove failed"
[[ $(grep -c '^[0-9]' "$tmp/cluster.key") == 1 ]] || fail "rotation left $(grep -c '^[0-9]' "$tmp/cluster.key") keys"
[[ $(stat -c %a "$tmp/cluster.key") == 600 ]] || fail "rotation changed the key file mode"
check
chmod 644 "$tmp/cluster.key"
out=$("$shoalctl" validate "$tmp/cluster.yaml" 2>&1) && fail "unsafe key accepted"
[[ "$out" == *"chmod 600"* ]] || fail "unsafe key message does not say how to fix it: $out"

# 4. plan --json: an array per service indexed by bucket, owners are node names or null.
check
json=$("$shoalctl" plan "$src/etc/cluster.yaml" --down beta --json) || fail "plan failed"
[[ $(jq '.buckets.http | length' <<<"$json") == 16 ]] || fail "plan: http has not 16 buckets"
[[ $(jq '[.buckets.http[] | select(. == "beta")] | length' <<<"$json") == 0 ]] ||
  fail "plan: a down node owns buckets"
[[ $(jq '[.buckets.http[] | select(. == null)] | length' <<<"$json") == 0 ]] ||
  fail "plan: a bucket has no owner while two nodes are up"
check
json=$("$shoalctl" plan "$src/test/configs/good/minimal.yaml" --json) || fail "plan minimal failed"
[[ $(jq -r '.buckets | type' <<<"$json") == array ]] || fail "plan: single service buckets is not an array"
check
"$shoalctl" plan "$src/etc/cluster.yaml" --down nosuchnode >/dev/null 2>&1 && fail "plan accepted an unknown node"
check
"$shoalctl" plan "$src/etc/cluster.yaml" --drain alpha | grep -q 'alpha .*drained' || fail "plan text lacks the drained node"

echo "$((checks - failures)) passed, $failures failed"
((failures == 0))
