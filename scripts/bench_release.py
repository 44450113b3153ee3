"""Release figures (scripts/bench --no-release skips them): a release published to
225 doors and fetched and checked by each door's updater from a real HTTP store
(WsgiDAV), with the bytes the store served; and one door's offline install of the
release (a venv from the wheels alone), the work before its switch. The switch
itself (old READY -> new READY) and a rollback are timed by the door and logged in
release.applied / release.rolled_back (switch_seconds, rollback_seconds): see the
container test and the README.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_release(directory: Path, doors: int = 225, parallel: int = 32) -> dict:
    from accessd.config import load_config
    from accessd.site import release as releases
    from accessd.site.db import SiteDB
    from accessd.site.publish import door_keys
    from accessd.sync import release as rel
    from accessd.sync.store import HttpStore
    from accessd.testing import DavServer
    from accessd.updater import Updater
    directory.mkdir(parents=True, exist_ok=True)
    site = SiteDB.init(directory / "site", "bench")
    site.group_add("all")
    for i in range(doors):
        site.door_add(f"door-{i:03d}", "all")
    t0 = time.perf_counter()
    path = releases.build(site, directory / "releases", version="1.0",
                          platforms=("aarch64", "x86_64"))
    build_s = time.perf_counter() - t0
    dav = DavServer(directory / "store")
    try:
        store = HttpStore(dav.url)
        ids = [d["id"] for d in site.doors()]
        t0 = time.perf_counter()
        pub = releases.publish(site, store, path, ids)
        publish_s = time.perf_counter() - t0
        cfg_path = directory / "door.toml"
        cfg_path.write_text(f'[door]\nid = "door-000"\n[gpio]\npin_factory = "mock"\n'
                            f'relay_pin = 17\n[storage]\ndata_dir = "{directory}/data"\n'
                            f'key_file = "{directory}/k.json"\n[update]\n'
                            f'state_dir = "{directory}/state"\n')
        cfg = load_config(cfg_path, require_keys=False)
        cfg.update.state_dir.mkdir(parents=True)

        door_key = {d: door_keys(site, d) for d in ids}

        def one(door: str) -> tuple[float, int]:
            keys = door_key[door]
            up = Updater(cfg, keys, HttpStore(dav.url))
            start = time.perf_counter()
            target = rel.open_target(up.store.get(rel.target_name(door)),
                                     public_key=up.public, site=keys.site.site,
                                     door=door)
            m, incoming = up._fetch(target)
            got = sum(f.stat().st_size for f in (incoming / "wheels").iterdir())
            shutil.rmtree(incoming)
            return time.perf_counter() - start, got
        t0 = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            fetched = list(pool.map(one, ids))
        all_s = time.perf_counter() - t0
        per_door = sorted(t for t, _ in fetched)
        served = sum(n for _, n in fetched)
        # one door's install from the wheels alone (what it does before switching)
        wheels = path / "wheels"
        venv = Path(tempfile.mkdtemp(dir=directory)) / "1.0"
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.base_prefix) / "bin/python3"), "-m", "venv", str(venv)],
                       check=True)
        subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-index",
                        "--find-links", str(wheels), "accessd[pi]"], check=True,
                       env={"PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1"})
        install_s = time.perf_counter() - t0
    finally:
        dav.stop()
    return {"doors": doors, "parallel_fetches": parallel,
            "release_files": pub["files"], "release_mb": round(pub["bytes"] / 1e6, 1),
            "build_s": round(build_s, 1), "publish_s": round(publish_s, 2),
            "all_doors_fetched_and_verified_s": round(all_s, 1),
            "per_door_fetch_p50_s": round(per_door[len(per_door) // 2], 2),
            "per_door_fetch_max_s": round(per_door[-1], 2),
            "store_bytes_served_mb": round(served / 1e6, 1),
            "store_mb_per_door": round(served / doors / 1e6, 1),
            "one_door_offline_install_s": round(install_s, 1)}


def bench_switch(directory: Path) -> dict:
    """One door's switch (old READY -> new READY) and rollback (READY timeout -> old
    READY), under real systemd: the container test's door, which times both itself
    (release.applied switch_seconds, release.rolled_back rollback_seconds)."""
    import json
    import os
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn"):
        return {"skipped": "needs root and systemd-nspawn (a booted container)"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--basetemp={directory}", "tests/test_release_container.py"],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stdout[-500:]}
    events = [json.loads(line) for f in directory.rglob("results/events.json")
              for line in f.read_text().splitlines() if line.startswith("{")]
    detail = {e["kind"]: json.loads(e["detail"]) if isinstance(e["detail"], str)
              else e["detail"] for e in events}
    return {"switch_old_ready_to_new_ready_s": detail["release.applied"]["switch_seconds"],
            "rollback_after_ready_timeout_s":
                detail["release.rolled_back"]["rollback_seconds"],
            "ready_timeout_s": 20}


if __name__ == "__main__":
    import json
    with tempfile.TemporaryDirectory() as tmp:
        out = bench_release(Path(tmp) / "release")
        out["one_door"] = bench_switch(Path(tmp) / "switch")
        print(json.dumps(out, indent=2))
