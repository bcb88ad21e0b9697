#!/usr/bin/env bash
#! Builds the test VMs' disk image, kernel and initrd from Debian packages, without any registry.
#
#   ci/vm/build.sh                 build (unless cached) and print the image's directory
#   ci/vm/build.sh --print-path    print the directory without building
#
# The directory ($HOME/.cache/deploy/vm/<hash of this recipe>/) holds disk.qcow2 (the root
# file system, ext4 on the whole disk, no partition table), vmlinuz and initrd.img (booted
# with QEMU's -kernel/-initrd, `root=/dev/vda`) and cmdline (the kernel command line's
# fixed part).  ci/testbed.sh up --vm boots each VM on a qcow2 overlay of disk.qcow2, which
# is never written.
#
# Why VMs as well as containers (issue 27): a test server that must be a real machine, with
# systemd as PID 1 and reboots that are reboots (a hard reset loses what was not synced,
# services come back by themselves, the kernel is the server's own), cannot be a container
# here: systemd in a container needs --privileged or cgroup delegation and a writable cgroup
# tree, which this machine's Docker refuses, and `docker restart` is a process restart, not a
# reboot.  A QEMU VM is the real thing; with KVM it boots in seconds, without KVM (TCG
# emulation, DEPLOY_VM_ACCEL=tcg forces it) it is slower but the same machine, so the tests
# still run, never skip.
#
# The recipe: mmdebstrap makes a bookworm root from this machine's own apt sources (as
# ci/image/build.sh does) with a kernel, systemd as init and the server's packages (no
# supervisor: these servers' process manager is systemd); a `deploy` user like the
# containers' (key-only SSH with ci/image/sshd.conf, passwordless sudo for now); D-Bus, as on
# a real server (systemctl as a non-root user asks systemd over the system bus); no SSH keys
# in the image: ci/vm/vm-keys installs, at every boot, the authorized key and a per-VM host
# key that the host hands over through QEMU's fw_cfg (or makes a host key at first boot);
# systemd-networkd takes DHCP on the virtio NIC (wait-online: any one link, 20 s at most);
# the console is the serial port (ttyS0).  The root directory becomes an ext4 image with
# `mkfs.ext4 -d` (no loop mount, no privileges beyond owning the files) and then qcow2.
# The initrd is Debian's initramfs-tools' with MODULES=list (virtio_pci, virtio_blk,
# virtio_net, ext4 and what they need) instead of MODULES=most: a fifth of the size, and
# seconds less of every boot under TCG; the build fails if one of them is missing.  Builds are serialised by a lock; a finished image
# is renamed into place whole.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PACKAGES=linux-image-amd64,systemd-sysv,dbus,openssh-server,python3,python3-venv,nginx-light,sudo,curl,ca-certificates,procps,iproute2,e2fsprogs,kmod
FILES=("$here/build.sh" "$here/vm-keys" "$here/deploy-vm-keys.service" "$here/20-dhcp.network"
       "$here/sshd-vm.conf" "$here/wait-online.conf" "$root/ci/image/sshd.conf")
# The kernel command line (ci/testbed.sh adds systemd.hostname=): root on the whole virtio
# disk, the console on the serial port, eth0 for the NIC; no modules for hardware that QEMU's
# pc machine emulates but no test uses, or that TCG's CPU merely advertises (every second
# counts under emulation).
CMDLINE="root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 biosdevname=0"
CMDLINE+=" module_blacklist=floppy,kvm,kvm_amd,kvm_intel,ccp,cfg80211,psmouse,pcspkr,dm_mod,ata_piix,ata_generic"

hash="$( (cat "${FILES[@]}"; echo "$PACKAGES $CMDLINE") | sha256sum | cut -c1-12)"
cache="$HOME/.cache/deploy/vm"
out="$cache/$hash"
if [[ "${1:-}" == "--print-path" ]]; then echo "$out"; exit 0; fi
if [[ -f "$out/.done" ]]; then touch "$out/.done"; echo "$out"; exit 0; fi # used: kept (below)
for tool in mmdebstrap mkfs.ext4 qemu-img; do
    command -v "$tool" >/dev/null || { echo "vm/build: $tool is missing (apt-get install mmdebstrap e2fsprogs qemu-utils)" >&2; exit 1; }
done

mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock -w 1800 9 || { echo "vm/build: timed out waiting for $cache/.build.lock" >&2; exit 1; }
if [[ -f "$out/.done" ]]; then echo "$out"; exit 0; fi

work="$(mktemp -d "$cache/.build-$hash.XXXXXX")"
trap 'rm -rf "$work"' EXIT
t0=$SECONDS
echo "vm/build: building $out (mmdebstrap from $(ls /etc/apt/sources.list.d/*.sources | head -1))" >&2

sources=(/etc/apt/sources.list.d/*.sources)
mmdebstrap --variant=apt --include="$PACKAGES" \
  --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook="copy-in $root/ci/image/sshd.conf $here/sshd-vm.conf /etc/ssh/sshd_config.d" \
  --customize-hook="copy-in $here/vm-keys /usr/local/sbin" \
  --customize-hook="copy-in $here/deploy-vm-keys.service /etc/systemd/system" \
  --customize-hook="copy-in $here/20-dhcp.network /etc/systemd/network" \
  --customize-hook='mkdir -p "$1/etc/systemd/system/systemd-networkd-wait-online.service.d"' \
  --customize-hook="copy-in $here/wait-online.conf /etc/systemd/system/systemd-networkd-wait-online.service.d" \
  --customize-hook='chroot "$1" sh -eu -c "
      rm -f /etc/ssh/ssh_host_*
      rm -f /etc/nginx/sites-enabled/default
      useradd --create-home --shell /bin/bash deploy
      usermod -p \"*\" deploy
      echo \"deploy ALL=(ALL) NOPASSWD:ALL\" > /etc/sudoers.d/deploy
      chmod 0440 /etc/sudoers.d/deploy
      chmod 0755 /usr/local/sbin/vm-keys
      echo \"/dev/vda / ext4 rw,errors=remount-ro 0 1\" > /etc/fstab
      systemctl enable systemd-networkd.service deploy-vm-keys.service ssh.service nginx.service
      systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
          e2scrub_reap.service getty@tty1.service getty-static.service
      : > /etc/machine-id
      rm -f /var/lib/dbus/machine-id
      rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/*
      printf \"%s\\n\" virtio_pci virtio_blk virtio_net ext4 >> /etc/initramfs-tools/modules
      echo MODULES=list > /etc/initramfs-tools/conf.d/deploy-vm.conf
      update-initramfs -u -k all
      test -e /boot/vmlinuz-* && test -e /boot/initrd.img-*
  "' \
  --customize-hook='for m in virtio_blk virtio_net virtio_pci ext4; do
      chroot "$1" sh -c "lsinitramfs /boot/initrd.img-* | grep -q /$m.ko || grep -q /$m.ko /lib/modules/*/modules.builtin" ||
          { echo "vm/build: $m is neither in the initrd nor built in" >&2; exit 1; }
  done' \
  bookworm "$work/root" "${sources[@]}" >&2

img="$work/image"
mkdir "$img"
cp "$work/root"/boot/vmlinuz-* "$img/vmlinuz"
cp "$work/root"/boot/initrd.img-* "$img/initrd.img"
echo "$CMDLINE" > "$img/cmdline"
# Room for deployments on top of what is installed (the overlays grow only as written).
size_mb=$(( $(du -sm "$work/root" | cut -f1) + 3072 ))
mkfs.ext4 -q -F -L deploy-root -d "$work/root" "$work/root.ext4" "${size_mb}M" >&2
rm -rf "$work/root"
qemu-img convert -O qcow2 "$work/root.ext4" "$img/disk.qcow2"
rm -f "$work/root.ext4"
chmod 0444 "$img/disk.qcow2" "$img/vmlinuz" "$img/initrd.img" "$img/cmdline"
echo "$((SECONDS - t0))" > "$img/.build-seconds"
touch "$img/.done"
rm -rf "$out"
mv "$img" "$out"
# Images of other recipes, unused for a week, go (a running VM keeps its open backing file).
find "$cache" -mindepth 2 -maxdepth 2 -name .done -mtime +7 -printf '%h\n' | xargs -r rm -rf
echo "vm/build: built $out in $((SECONDS - t0)) s ($(du -sh "$out" | cut -f1))" >&2
echo "$out"
