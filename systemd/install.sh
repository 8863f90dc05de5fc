#!/bin/sh
# Installs or upgrades xtrader on a systemd host: the binary under an immutable, versioned path with
# /usr/local/bin/xtrader pointing at it, the templated unit, the service account, and optionally one
# instance's configuration. Safe to run again: it never overwrites an instance's configuration, nor a
# different binary already installed under the same version.
#
#   sudo ./install.sh [--root DIR] BINARY [INSTANCE [SUBSCRIPTIONS]]
#
# Keep it beside xtrader@.service, xtrader.sysusers and xtrader.env.example (the systemd/ directory).
# --root DIR installs into DIR instead of / (image builds, tests): accounts go to DIR/etc, no systemctl.
set -eu

usage() {
  echo "usage: install.sh [--root DIR] BINARY [INSTANCE [SUBSCRIPTIONS]]" >&2
  exit 2
}
die() {
  echo "install.sh: $*" >&2
  exit 1
}
bad_argument() {
  echo "install.sh: $*" >&2
  exit 2
}

root=/
if [ "${1:-}" = "--root" ]; then
  [ $# -ge 2 ] || usage
  root=$2
  shift 2
fi
if [ $# -lt 1 ] || [ $# -gt 3 ]; then usage; fi
binary=$1
instance=${2:-}
subscriptions=${3:-}
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
prefix=${root%/}

for file in xtrader@.service xtrader.sysusers xtrader.env.example; do
  [ -f "$here/$file" ] || die "missing $here/$file; keep install.sh beside the other files of systemd/"
done
[ -f "$binary" ] || bad_argument "no such file: $binary"
case "$instance" in
  *[!A-Za-z0-9_.-]* | [._-]*) bad_argument "instance name '$instance': use letters, digits, '.', '_' and '-'" ;;
esac
case "$subscriptions" in
  *[!A-Za-z0-9:@,._/-]*) bad_argument "SUBSCRIPTIONS '$subscriptions': STREAM:EXCHANGE@INSTRUMENT[,...] without spaces" ;;
esac

# The binary names its own install directory: "xtrader 0.1.0 (0123abcd4567)" -> 0.1.0-0123abcd4567.
chmod 0755 "$binary" 2>/dev/null || true
line=$("$binary" --version 2>/dev/null) ||
  die "$binary does not run on this machine (another CPU architecture or libc? see docs/deployment.md)"
version=$(printf '%s\n' "$line" | sed -n 's/^xtrader \([0-9A-Za-z.+-]*\) (\([0-9a-z-]*\))$/\1-\2/p')
[ -n "$version" ] || die "$binary --version printed '$line', expected 'xtrader VERSION (COMMIT)'"

versioned="$prefix/usr/local/lib/xtrader/$version/xtrader"
if [ -e "$versioned" ]; then
  cmp -s "$binary" "$versioned" ||
    die "$versioned exists with different content; versions are immutable: build from a new commit (or remove that directory if you really mean to replace it)"
  echo "xtrader $version is already installed"
else
  install -d -m 0755 "$(dirname "$versioned")"
  install -m 0755 "$binary" "$versioned.partial"
  mv -f "$versioned.partial" "$versioned"
  echo "installed $versioned"
fi
# Switch /usr/local/bin/xtrader with one rename: running instances keep their binary until restarted.
install -d -m 0755 "$prefix/usr/local/bin"
ln -sfn "../lib/xtrader/$version/xtrader" "$prefix/usr/local/bin/.xtrader.next"
mv -f "$prefix/usr/local/bin/.xtrader.next" "$prefix/usr/local/bin/xtrader"
echo "/usr/local/bin/xtrader -> xtrader $version"

install -d -m 0755 "$prefix/etc/systemd/system" "$prefix/etc/sysusers.d" "$prefix/etc/xtrader"
install -m 0644 "$here/xtrader@.service" "$prefix/etc/systemd/system/xtrader@.service"
install -m 0644 "$here/xtrader.sysusers" "$prefix/etc/sysusers.d/xtrader.conf"
install -m 0644 "$here/xtrader.env.example" "$prefix/etc/xtrader/xtrader.env.example"
if [ -f "$here/../docs/deployment.md" ]; then
  install -d -m 0755 "$prefix/usr/local/share/doc/xtrader"
  install -m 0644 "$here/../docs/deployment.md" "$prefix/usr/local/share/doc/xtrader/deployment.md"
fi

if command -v systemd-sysusers >/dev/null 2>&1; then
  systemd-sysusers --root="$root" "$prefix/etc/sysusers.d/xtrader.conf"
elif [ "$root" = / ] && command -v useradd >/dev/null 2>&1; then
  getent passwd xtrader >/dev/null ||
    useradd --system --user-group --home-dir /var/lib/xtrader --no-create-home --shell /usr/sbin/nologin xtrader
else
  die "cannot create the xtrader account: neither systemd-sysusers nor useradd is available"
fi

if [ -n "$instance" ]; then
  config="$prefix/etc/xtrader/$instance.env"
  if [ -e "$config" ]; then
    echo "kept $config (existing configuration is never overwritten)"
  else
    # Root-only: systemd reads it before dropping privileges, and it may hold credentials.
    (
      umask 077
      if [ -n "$subscriptions" ]; then
        sed "s|^SUBSCRIPTIONS=.*|SUBSCRIPTIONS=$subscriptions|" "$here/xtrader.env.example" >"$config.partial"
      else
        cp "$here/xtrader.env.example" "$config.partial"
      fi
      mv -f "$config.partial" "$config"
    )
    echo "wrote $config; review it, then: systemctl enable --now xtrader@$instance"
  fi
fi

if [ "$root" = / ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  running=$(systemctl list-units --plain --no-legend --state=running 'xtrader@*.service' | awk '{ print $1 }')
  if [ -n "$running" ]; then
    echo "running instances still use the previous binary; restart them one at a time:"
    for unit in $running; do echo "  systemctl restart $unit"; done
  fi
fi
