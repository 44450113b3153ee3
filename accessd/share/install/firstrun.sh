#!/bin/bash
# accessd's part of a card's first boot (written by 'accessctl door provision --release').
# The kernel runs BOOT/firstrun.sh once (systemd.run= on cmdline.txt), which runs this:
# it installs accessd-firstboot.service, and that unit installs the door at the next
# boot from this directory (release/, accessd.toml, keys.json) with no network.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
sed "s#@HERE@#$here#g" "$here/accessd-firstboot.service" \
  > /etc/systemd/system/accessd-firstboot.service
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf ../accessd-firstboot.service \
  /etc/systemd/system/multi-user.target.wants/accessd-firstboot.service
echo "accessd: accessd-firstboot.service installed; it runs at the next boot" \
  | tee -a "$here/install.log"
