"""Write hack/litellm-requirements.txt: every package of `litellm[proxy,proxy-runtime]==VERSION`, pinned by hash.

pip resolves the set itself (`pip install --dry-run --report`), on this machine's Python and platform, and the
report carries the sha256 of every file it chose; no other tool is needed. Run it with the Python the install
script uses (python3, 3.11 on x86-64 Linux here):

    python3 hack/litellm-lock.py 1.108.7 > hack/litellm-requirements.txt

The hashes fit that interpreter and platform; on another one pip refuses the install (a hash mismatch or a
missing hash), which is the point: regenerate the file there and review the diff.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

EXTRAS = "proxy,proxy-runtime"
# The image also has LiteLLM's `extra-proxy` Prisma client. Without it, the proxy's authentication error
# handler (which asks whether an error came from the database) fails with an ImportError, and a request
# without a key answers 500 instead of 401. Only prisma is added, not the rest of that extra.
ALSO = ("prisma>=0.11.0,<1.0",)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: litellm-lock.py VERSION", file=sys.stderr)
        return 2
    version = argv[0]
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--report", str(report_path), f"litellm[{EXTRAS}]=={version}", *ALSO],
            check=True,
        )
        report = json.loads(report_path.read_text())
    env = report["environment"]
    print(f"# litellm[{EXTRAS}]=={version} (+ {', '.join(ALSO)}) and everything they need, pinned by sha256")
    print("# (pip --require-hashes).")
    print(f"# Resolved by pip {report.get('pip_version')} for CPython {env['python_full_version']} on "
          f"{env['sys_platform']} {env['platform_machine']}; regenerate with:")
    print(f"#   python3 hack/litellm-lock.py {version} > hack/litellm-requirements.txt")
    rows = []
    for item in report["install"]:
        meta, info = item["metadata"], item["download_info"]
        hashes = info.get("archive_info", {}).get("hashes", {})
        if "sha256" not in hashes:
            raise SystemExit(f"no sha256 for {meta['name']} {meta['version']} ({info['url']})")
        name = meta["name"]
        if item.get("requested_extras"):
            name += "[" + ",".join(sorted(item["requested_extras"])) + "]"
        rows.append((meta["name"].lower(), f"{name}=={meta['version']} \\\n    --hash=sha256:{hashes['sha256']}"))
    for _, row in sorted(rows):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
