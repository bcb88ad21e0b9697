#!/usr/bin/env bash
#! Builds the test-server image from Debian packages, without any registry.
#
# mmdebstrap makes a bookworm root filesystem from this machine's own apt sources,
# the customize hooks turn it into a small "real server" (sshd with key-only login,
# python3 + venv, nginx, supervisord, a `deploy` user with passwordless sudo, systemd
# for `ci/testbed.sh up --systemd`: /sbin/init as PID 1, ssh, nginx and testbed-keys as
# units; supervisor's own unit is not enabled, start-server starts supervisord itself) plus a
# pypiserver install used by the index container and Debian's PostgreSQL 15 used by the
# database container (no cluster in the image: start-server makes one at container start),
# and `docker import` makes it an image.
#
# The tag carries a hash of this recipe, so the image is rebuilt only when the recipe
# changes.  Prints the tag on stdout.  `--print-tag` prints it without building.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYPISERVER_VERSION=2.4.2
PACKAGES=openssh-server,python3,python3-venv,nginx-light,supervisor,sudo,curl,ca-certificates,procps,iproute2,postgresql,systemd-sysv,dbus

hash="$( (cat "$here/build.sh" "$here/start-server" "$here/sshd.conf" "$here/testbed-keys.service"; echo "$PACKAGES $PYPISERVER_VERSION") | sha256sum | cut -c1-12)"
tag="deploy-testbed:$hash"
if [[ "${1:-}" == "--print-tag" ]]; then echo "$tag"; exit 0; fi
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building $tag (mmdebstrap from $(ls /etc/apt/sources.list.d/*.sources | head -1))" >&2

# pypiserver for the index container: wheels fetched here (the host reaches PyPI),
# installed offline inside the root filesystem.
mkdir -p "$work/wheels"
python3 -m pip download --quiet --only-binary=:all: --python-version 3.11 \
  --dest "$work/wheels" "pypiserver==$PYPISERVER_VERSION" >&2

sources=(/etc/apt/sources.list.d/*.sources)
mmdebstrap --variant=apt --include="$PACKAGES" \
  --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" &&
      echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/no-main-cluster.conf"' \
  --customize-hook="copy-in $here/start-server /usr/local/sbin" \
  --customize-hook="copy-in $here/sshd.conf /etc/ssh/sshd_config.d" \
  --customize-hook="copy-in $here/testbed-keys.service /etc/systemd/system" \
  --customize-hook="mkdir -p \"\$1/tmp/wheels\"" \
  --customize-hook="copy-in $work/wheels /tmp" \
  --customize-hook='chroot "$1" sh -eu -c "
      rm -f /etc/ssh/ssh_host_*
      rm -f /etc/nginx/sites-enabled/default
      useradd --create-home --shell /bin/bash deploy
      usermod -p \"*\" deploy
      echo \"deploy ALL=(ALL) NOPASSWD:ALL\" > /etc/sudoers.d/deploy
      chmod 0440 /etc/sudoers.d/deploy
      chmod 0755 /usr/local/sbin/start-server
      # systemd mode: supervisord and PostgreSQL are not started at boot (start-server
      # starts supervisord in the supervisord mode; the db container runs its own).
      rm -f /etc/systemd/system/multi-user.target.wants/supervisor.service
      rm -f /etc/systemd/system/multi-user.target.wants/postgresql.service
      mkdir -p /etc/systemd/system/ssh.service.requires
      ln -s /etc/systemd/system/testbed-keys.service /etc/systemd/system/multi-user.target.wants/
      ln -s /etc/systemd/system/testbed-keys.service /etc/systemd/system/ssh.service.requires/
      test -L /etc/systemd/system/multi-user.target.wants/nginx.service
      test -L /etc/systemd/system/sshd.service
      python3 -m venv /opt/pypiserver
      /opt/pypiserver/bin/pip install --quiet --no-index --find-links /tmp/wheels pypiserver
      rm -rf /tmp/wheels /var/cache/apt/archives/*.deb /var/lib/apt/lists/*
      test ! -e /etc/postgresql/15/main && test ! -e /var/lib/postgresql/15/main
    "' \
  bookworm "$work/rootfs.tar" "${sources[@]}" >&2

docker import \
  --change 'CMD ["/usr/local/sbin/start-server"]' \
  --change 'EXPOSE 22 80 5432 8080' \
  --change "LABEL deploy.testbed=image" \
  "$work/rootfs.tar" "$tag" >&2
echo "$tag"
