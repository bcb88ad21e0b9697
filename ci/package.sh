#!/usr/bin/env bash
#! Debian packages of the gateway and the CLI.
#!
#!   ci/package.sh [--release] [--out DIR]
#!
#! Builds `deploy-gateway` and `deploy` (debug by default, so the tests reuse the build
#! cache; `--release` for real use), writes deploy-gateway_<ver>_<arch>.deb and
#! deploy_<ver>_<arch>.deb into DIR (default $CARGO_TARGET_DIR/deb, or target/deb) and
#! prints DIR as its last line.  The version is the workspace's (Cargo.toml); a semver
#! pre-release `1.2.0-rc.1` becomes Debian's `1.2.0~rc.1` (sorts before 1.2.0).
#!
#! Decision: `dpkg-deb --build` around a staged tree, not cargo-deb.  dpkg-deb is part of
#! dpkg (on every Debian machine, CI's included), so CI installs and builds nothing more;
#! cargo-deb would be a `cargo install` (minutes of compiling on a fresh machine) and the
#! gateway's maintainer scripts (system user, state directory, config modes, the unit
#! started only on a config that checks out) would be ours anyway.  What the packages
#! hold is written here and in ci/deb/ (control files, maintainer scripts, the systemd
#! unit, the commented gateway.toml); `dpkg-deb --root-owner-group` makes every file
#! root's without fakeroot, and the postinst gives the config its group.
#!
#! The gateway package:
#!   /usr/bin/deploy-gateway
#!   /usr/share/deploy-gateway/{playbooks,templates}/     the repository's
#!   /lib/systemd/system/deploy-gateway.service           ci/deb/gateway/
#!   /etc/deploy-gateway/gateway.toml                     conffile, 0640 root:deploy-gateway
#!   /usr/share/doc/deploy-gateway/{README.md,copyright,examples/inventory.yml}
#! The CLI package: /usr/bin/deploy, its bash/zsh/fish completions and man pages (as
#! `deploy completions` and `deploy manpages` write them), /usr/share/doc/deploy/copyright.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

profile=debug
out=""
while (($#)); do
    case "$1" in
        --release) profile=release ;;
        --out) out="$2"; shift ;;
        *) echo "usage: ci/package.sh [--release] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
out="${out:-$CARGO_TARGET_DIR/deb}"

cargo_flags=(--locked --quiet)
[[ $profile == release ]] && cargo_flags+=(--release)
cargo build "${cargo_flags[@]}" -p deploy --bin deploy-gateway
cargo build "${cargo_flags[@]}" -p deploy-cli --bin deploy
bin="$CARGO_TARGET_DIR/$profile"

# The workspace's version (every package has it), from Cargo itself.
version="$(cargo pkgid --quiet -p deploy-cli | sed 's/.*[#@]//')"
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "package.sh: no version in Cargo.toml's answer: $version" >&2; exit 1; }
debversion="${version/-/\~}"
arch="$(dpkg --print-architecture)"
# The C library the binaries were linked against here: its upstream version is the least
# they may need.
libc="$(dpkg-query -W -f='${Version}' libc6 | sed 's/-.*//')"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# stage PACKAGE: an empty tree with its DEBIAN/ and doc directory
stage() {
    local d="$work/$1"
    install -d -m 0755 "$d/DEBIAN" "$d/usr/bin" "$d/usr/share/doc/$1"
    {
        echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
        echo "Upstream-Name: deploy"
        echo
        echo "Files: *"
        echo "Copyright: the deploy authors"
        echo "License: Apache-2.0"
        echo " On Debian systems, the full text is in /usr/share/common-licenses/Apache-2.0."
    } > "$d/usr/share/doc/$1/copyright"
    chmod 0644 "$d/usr/share/doc/$1/copyright"
}

# control PACKAGE TEMPLATE: DEBIAN/control with the version, architecture and size
control() {
    local d="$work/$1" size
    size="$(du -sk --exclude=DEBIAN "$d" | cut -f1)"
    sed -e "s/@DEBVERSION@/$debversion/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
        -e "s/@LIBC@/$libc/" "$2" > "$d/DEBIAN/control"
}

# build PACKAGE: the .deb, every file root's
build() {
    dpkg-deb --root-owner-group -Zxz --build "$work/$1" "$out/${1}_${debversion}_${arch}.deb" >/dev/null
}

mkdir -p "$out"

# --- deploy-gateway
g="$work/deploy-gateway"
stage deploy-gateway
install -m 0755 "$bin/deploy-gateway" "$g/usr/bin/deploy-gateway"
for sub in playbooks templates; do
    install -d -m 0755 "$g/usr/share/deploy-gateway/$sub"
    install -m 0644 "$sub"/* "$g/usr/share/deploy-gateway/$sub/"
done
install -D -m 0644 ci/deb/gateway/deploy-gateway.service "$g/lib/systemd/system/deploy-gateway.service"
install -d -m 0755 "$g/etc/deploy-gateway"
sed "s/@VERSION@/$version/g" ci/deb/gateway/gateway.toml > "$g/etc/deploy-gateway/gateway.toml"
chmod 0640 "$g/etc/deploy-gateway/gateway.toml" # its group is set by postinst
install -m 0644 README.md "$g/usr/share/doc/deploy-gateway/README.md"
install -D -m 0644 inventory/example.yml "$g/usr/share/doc/deploy-gateway/examples/inventory.yml"
for script in postinst prerm postrm; do
    install -m 0755 "ci/deb/gateway/$script" "$g/DEBIAN/$script"
done
echo /etc/deploy-gateway/gateway.toml > "$g/DEBIAN/conffiles"
control deploy-gateway ci/deb/gateway/control
build deploy-gateway

# --- deploy (the CLI)
stage deploy
c="$work/deploy"
install -m 0755 "$bin/deploy" "$c/usr/bin/deploy"
# Its completions and man pages, as the binary writes them.
install -d -m 0755 "$c/usr/share/bash-completion/completions" "$c/usr/share/zsh/vendor-completions" \
    "$c/usr/share/fish/vendor_completions.d" "$c/usr/share/man/man1"
"$bin/deploy" completions bash > "$c/usr/share/bash-completion/completions/deploy"
"$bin/deploy" completions zsh > "$c/usr/share/zsh/vendor-completions/_deploy"
"$bin/deploy" completions fish > "$c/usr/share/fish/vendor_completions.d/deploy.fish"
"$bin/deploy" manpages "$c/usr/share/man/man1" >/dev/null
gzip -9n "$c"/usr/share/man/man1/*.1
find "$c/usr/share" -type f -exec chmod 0644 {} +
control deploy ci/deb/cli/control
build deploy

echo "$out"
