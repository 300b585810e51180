#!/usr/bin/env python3
"""A stand-in for `adb` that runs everything on this machine (tests of the android device's transport).

Understands what `easrec.devices.android` sends: `-s SERIAL` then `push LOCAL REMOTE` (a copy),
`shell COMMAND` (run with /bin/sh; output and exit status passed through), `logcat ...` (nothing)
and `devices`. Remote paths are used as they are, so tests give the device a temporary remote_dir.
"""

import shutil
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Emulate one adb invocation."""
    if argv[:1] == ["-s"]:
        argv = argv[2:]
    if not argv:
        print("adb: no command", file=sys.stderr)
        return 1
    cmd, rest = argv[0], argv[1:]
    if cmd == "devices":
        print("List of devices attached\nFAKE0001\tdevice\n")
        return 0
    if cmd == "push" and len(rest) == 2:
        dest = Path(rest[1])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rest[0], dest)
        print(f"{rest[0]}: 1 file pushed.")
        return 0
    if cmd == "shell" and rest:
        done = subprocess.run(["/bin/sh", "-c", " ".join(rest)], capture_output=True, text=True)
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        return done.returncode
    if cmd == "logcat":
        return 0
    print(f"adb: unknown command {cmd}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
