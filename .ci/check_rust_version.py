"""Fails if a dependency declares a rust-version above the workspace's own."""
import json
import subprocess
import sys

metadata = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--all-features"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)


def version(text):
    return tuple(int(part) for part in text.split("."))


members = set(metadata["workspace_members"])
ours = {p["rust_version"] for p in metadata["packages"] if p["id"] in members}
if len(ours) != 1 or None in ours:
    sys.exit(f"the workspace members should share one rust-version, found {ours}")
(declared,) = ours
newer = [
    f"{p['name']} {p['version']} needs Rust {p['rust_version']}"
    for p in metadata["packages"]
    if p["id"] not in members and p.get("rust_version")
    and version(p["rust_version"]) > version(declared)
]
if newer:
    sys.exit(f"rust-version {declared} is too old:\n" + "\n".join(newer))
print(f"rust-version {declared}: no dependency needs a newer Rust")
