#!/usr/bin/env bash
# The one list of what Strata needs from the system (Debian 12 / Ubuntu 22.04+ on x86_64 with
# io_uring), and the one place that installs it. tools/quickstart.sh, tools/test.sh, tools/rgw.sh
# and .ci/run call it; no other file lists packages (tests/integration/deps_test.sh checks).
#
#   tools/deps.sh ensure build|test   install what is missing, saying what and why (root, or
#                                     sudo); otherwise print the one command to run and fail
#   tools/deps.sh install build|test  apt-get update, then install all of it (CI)
#   tools/deps.sh list build|test     the packages, one per line
#   tools/deps.sh missing build|test  the packages not installed, one per line
#
# build: what building and running strata and strata-nbd needs (the quickstart).
# test:  build, plus the test, benchmark and fuzzing tools and every real client and server the
#        tests drive (GoogleTest, clang, qemu, fio, nbdkit, the AWS CLI, Ceph RGW, ...).
set -euo pipefail

build_packages=(
  build-essential g++ cmake pkg-config git ca-certificates
  liburing-dev libxxhash-dev libzstd-dev liblmdb-dev nlohmann-json3-dev libcli11-dev
  libcurl4-openssl-dev libssl-dev libpugixml-dev libgnutls28-dev libsystemd-dev
  prometheus-cpp-dev libmicrohttpd-dev
)
test_packages=(
  libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev
  gnutls-bin systemd man-db qemu-system-x86 linux-image-amd64 busybox-static nbd-client cpio
  ceph-mon ceph-osd ceph-mgr radosgw s3cmd restic
  qemu-utils nbdkit libnbd-bin python3-libnbd fuse3 fio nbd-server e2fsprogs xxhash zstd curl util-linux
  awscli python3-boto3 jp ansible
)
# What the libraries are, for a system without Debian's package names.
libraries_text="a C++20 compiler, CMake >= 3.25, pkg-config, and the development files of
liburing, xxHash, zstd, LMDB, nlohmann-json (>= 3.10), CLI11, libcurl, OpenSSL, pugixml, GnuTLS,
libsystemd, prometheus-cpp and GNU libmicrohttpd"

usage() {
  echo "usage: tools/deps.sh ensure|install|list|missing build|test" >&2
  exit 2
}
[[ $# -eq 2 ]] || usage
action=$1
set_name=$2
case "$set_name" in
  build) packages=("${build_packages[@]}") ;;
  test) packages=("${build_packages[@]}" "${test_packages[@]}") ;;
  *) usage ;;
esac

missing() {
  local p status
  for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ "$status" == ii* ]] || echo "$p"
  done
}

debian_like() { command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; }

apt_install() {  # apt_install SUDO PACKAGES...
  local sudo=$1
  shift
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "$@"
}

case "$action" in
  list) printf '%s\n' "${packages[@]}" ;;
  missing)
    debian_like || { echo "deps.sh: not a Debian or Ubuntu system" >&2; exit 1; }
    missing
    ;;
  install)
    debian_like || { echo "deps.sh: not a Debian or Ubuntu system" >&2; exit 1; }
    apt_install "" "${packages[@]}"
    ;;
  ensure)
    if ! debian_like; then
      echo "deps.sh: this is not Debian or Ubuntu, so nothing was installed. Strata needs" >&2
      echo "$libraries_text" >&2
      [[ $set_name == test ]] && echo "(and, for the tests, the tools tools/deps.sh list test names)" >&2
      exit 1
    fi
    mapfile -t need < <(missing)
    [[ ${#need[@]} -eq 0 ]] && exit 0
    why="to build and run strata"
    [[ $set_name == test ]] && why="to build Strata and run every test (clients, Ceph RGW, fuzzers)"
    if [[ $(id -u) == 0 ]]; then
      echo "deps.sh: installing ${#need[@]} Debian packages $why: ${need[*]}" >&2
      apt_install "" "${need[@]}"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      echo "deps.sh: installing ${#need[@]} Debian packages $why (sudo): ${need[*]}" >&2
      apt_install sudo "${need[@]}"
    else
      echo "deps.sh: ${#need[@]} Debian packages are missing $why. Run:" >&2
      echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
      exit 1
    fi
    ;;
  *) usage ;;
esac
