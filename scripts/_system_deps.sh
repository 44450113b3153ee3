# Sourced by scripts/test: the Debian packages some tests need, installed when missing.
# - python3-seccomp (for Debian's /usr/bin/python3), systemd-analyze, unshare and mount:
#   tests/test_unit_sandbox.py runs the daemon under systemd/accessd.service's own sandbox;
# - systemd-container (systemd-nspawn): tests/test_systemd_container.py boots real systemd;
# - mosquitto: tests/test_live.py runs the live channel against a real broker;
# - postgresql: the site database tests start a real PostgreSQL server (initdb);
# - nginx-full (nginx with its WebDAV modules): tests/test_store_nginx.py runs the store
#   on a real nginx, behind a proxy that cuts, shortens and stalls its answers.
# - chromium: tests/test_web_browser.py drives the office console in Debian's Chromium
#   through Playwright (executable_path; nothing downloads a browser).
# Installing needs root (CI runs as root); otherwise it says what is missing.
need=()
/usr/bin/python3 -I -c 'import seccomp' 2>/dev/null || need+=(python3-seccomp)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v unshare >/dev/null || need+=(util-linux)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v mount >/dev/null || need+=(mount)
{ command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null 2>&1 || need+=(mosquitto)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
  || need+=(postgresql)
[ -x /usr/sbin/nginx ] && [ -e /usr/lib/nginx/modules/ngx_http_dav_ext_module.so ] \
  || need+=(nginx-full)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages for the tests: ${need[*]} ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    # the tests start their own servers on free ports: keep the packages' services
    # (nginx on port 80, mosquitto, postgresql) from starting while they install
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
      own_policy=1
    fi
    apt-get install -y -q --no-install-recommends "${need[@]}" >&2 \
      || echo "warning: could not install ${need[*]}; the tests that need them will fail" >&2
    if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  else
    echo "note: some tests need root and: ${need[*]} (apt-get install them)" >&2
  fi
fi
