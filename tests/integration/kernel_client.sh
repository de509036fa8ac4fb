#!/usr/bin/env bash
# The kernel's own NBD client against strata-nbd, in a QEMU guest (README "The kernel NBD
# client"): Debian's kernel (nbd.ko) boots with a small initramfs (busybox, Debian's nbd-client
# and mke2fs, the modules it needs); the guest attaches a volume over TCP (the host's 127.0.0.1
# is 10.0.2.2 in QEMU's user network), makes ext4 on /dev/nbd0, mounts it, writes files, syncs,
# unmounts and disconnects; the host then checks them (e2fsck, debugfs, checksums).
# A second boot keeps the device attached while strata-nbd is killed (-9): what the guest sees
# is printed; the data it synced before is intact after a restart.
#
# usage: kernel_client.sh BUILD_DIR   (exit 77 = skipped: needs qemu-system-x86, a Debian
#                                      kernel (linux-image-amd64), busybox-static, nbd-client)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools qemu-system-x86_64 nbd-client busybox mke2fs e2fsck debugfs nbdcopy cpio modinfo
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
[[ -n "$kernel" ]] || { echo "SKIP: no kernel in /boot (tools/deps.sh ensure test installs one)"; exit 77; }
kver=${kernel#/boot/vmlinuz-}

# ---- the initramfs ----
root=$work/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,mnt,modules,data}
cp "$(command -v busybox)" "$root/bin/busybox"
copy_binary() {  # a dynamically linked program and every library it loads, at the same paths
  local bin=$1
  mkdir -p "$root$(dirname "$bin")"
  cp "$bin" "$root$bin"
  for lib in $(ldd "$bin" | grep -oE '/[^ ]+\.so[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy_binary "$(command -v nbd-client)"
copy_binary "$(command -v mke2fs)"
modules=()
add_module() {  # the module and what it depends on, dependencies first
  local m=$1 deps
  deps=$(modinfo -k "$kver" -F depends "$m" | tr ',' ' ')
  for d in $deps; do add_module "$d"; done
  [[ " ${modules[*]} " == *" $m "* ]] && return
  local path
  path=$(modinfo -k "$kver" -n "$m")
  [[ "$path" == /* ]] || return 0  # built in
  case $path in
    *.xz) xz -dc "$path" >"$root/modules/$m.ko" ;;
    *.zst) zstd -dqc "$path" >"$root/modules/$m.ko" ;;
    *) cp "$path" "$root/modules/$m.ko" ;;
  esac
  modules+=("$m")
}
# (ext4 and jbd2 take crc32c through the crypto API: a soft dependency modinfo does not list)
for m in nbd e1000 crc32c_generic ext4; do add_module "$m"; done
printf '%s\n' "${modules[@]}" >"$root/modules/order"
head -c 4M /dev/urandom >"$root/data/random.bin"
seq 1 100000 >"$root/data/numbers.txt"
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/sbin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "GUEST: insmod $m failed"; done
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^strata.$1=//p"; }
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
@NBD_CLIENT@ -N "$(arg export)" 10.0.2.2 "$(arg port)" /dev/nbd0 -b 4096 || echo "GUEST: nbd-client failed"
if [ "$(arg mode)" = write ]; then
  @MKE2FS@ -q -t ext4 -F /dev/nbd0 && mount -t ext4 /dev/nbd0 /mnt && cp /data/* /mnt/ &&
    md5sum /mnt/random.bin /mnt/numbers.txt | sed 's|/mnt/||' >/mnt/sums && sync &&
    umount /mnt && echo "GUEST: WROTE"
else  # mode kill: write and sync, tell the host, then keep using the device
  mount -t ext4 /dev/nbd0 /mnt && echo after-kill-test >/mnt/synced.txt && sync && echo "GUEST: SYNCED"
  sleep 4  # (the host kills strata-nbd now)
  dd if=/dev/nbd0 of=/dev/null bs=4096 count=1 skip=12345 iflag=direct 2>&1 | tail -1 | sed 's/^/GUEST: read after kill: /'
  # A write and sync after the kill, bounded: the guest kernel's error path decides whether they
  # return (on one loaded CI run sync never did), and the shell must go on to report either way.
  (echo x >/mnt/late.txt; sync 2>&1; echo "GUEST: sync after kill returned $?") &
  writer=$!
  for _ in $(seq 60); do kill -0 $writer 2>/dev/null || break; sleep 1; done
  kill -0 $writer 2>/dev/null && echo "GUEST: sync after kill still blocked after 60 s (the guest kernel's ext4/nbd error path)"
fi
@NBD_CLIENT@ -d /dev/nbd0 >/dev/null 2>&1 &
detach=$!
for _ in $(seq 30); do kill -0 $detach 2>/dev/null || break; sleep 1; done
kill -0 $detach 2>/dev/null && echo "GUEST: nbd-client -d still blocked after 30 s"
echo "GUEST: DONE"
poweroff -f
EOF
# (Debian's programs by path: busybox has applets of the same names)
sed -i "s|@NBD_CLIENT@|$(command -v nbd-client)|g; s|@MKE2FS@|$(command -v mke2fs)|g" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# ---- the host side ----
cli pool create >/dev/null
vol=$(cli create-volume --size 256MiB --volume-type unlimited | field VolumeId)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
boot() {  # MODE: the guest's console in $work/console, its pid in $qemu
  timeout 300 qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot \
    -kernel "$kernel" -initrd "$work/initrd.gz" -netdev user,id=n0 -device e1000,netdev=n0 \
    -append "console=ttyS0 panic=-1 quiet strata.port=$port strata.export=$vol strata.mode=$1" \
    </dev/null >"$work/console" 2>&1 &
  qemu=$!
}
start --listen "127.0.0.1:$port" --no-volume-limits
boot write
wait "$qemu" || true
grep -q "GUEST: WROTE" "$work/console" || { tail -30 "$work/console"; fail "the guest did not write its files"; }
stop_server
nbdcopy_out() { start --no-volume-limits; nbdcopy "$(uri "$vol")" "$work/disk.img"; stop_server; }
nbdcopy_out
e2fsck -fn "$work/disk.img" >/dev/null 2>&1 || fail "e2fsck of what the guest wrote"
debugfs -R "dump /random.bin $work/random.bin" "$work/disk.img" 2>/dev/null
cmp "$work/random.bin" "$root/data/random.bin" || fail "random.bin differs"
debugfs -R "cat /sums" "$work/disk.img" 2>/dev/null >"$work/sums"
(cd "$root/data" && md5sum -c "$work/sums" >/dev/null) || fail "the guest's checksums do not match"
pass "kernel nbd-client in a QEMU guest ($kver): ext4 made, files written and synced; e2fsck clean, every byte right"

# The server killed while the guest has the device attached.
start --listen "127.0.0.1:$port" --no-volume-limits
boot kill
for _ in $(seq 600); do grep -q "GUEST: SYNCED" "$work/console" && break; sleep 0.1; done
grep -q "GUEST: SYNCED" "$work/console" || { tail -30 "$work/console"; fail "the guest did not sync"; }
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
wait "$qemu" || true
grep "GUEST:" "$work/console" | sed 's/^/  /'
grep -q "GUEST: DONE" "$work/console" || fail "the guest hung after the server died"
nbdcopy_out
debugfs -R "cat /synced.txt" "$work/disk.img" 2>/dev/null | grep -q after-kill-test ||
  fail "a file the guest synced before the kill is gone"
e2fsck -fn "$work/disk.img" >/dev/null 2>&1 || echo "  (e2fsck after the kill: the journal holds unfinished work; a mount replays it)"
pass "strata-nbd killed under an attached guest: the guest's I/O fails (above) and it carries on; what it synced before is there"
echo "all kernel client checks passed"
