#!/usr/bin/env python3
"""A test VM's QEMU monitor (QMP) over its Unix socket, for ci/testbed.sh and by hand.

  ci/vm/qmp.py SOCKET COMMAND [ARGUMENTS-JSON]   runs one QMP command, prints its return as JSON
  ci/vm/qmp.py SOCKET hmp 'info usernet'          runs a human-monitor command, prints its text

e.g. `ci/vm/qmp.py DIR/web1.qmp system_reset` (a hard reset), `... quit` (power off).
Exits 1 with QEMU's error when the command fails.
"""
import json
import socket
import sys


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path, command = sys.argv[1], sys.argv[2]
    if command == "hmp":
        command, args = "human-monitor-command", {"command-line": sys.argv[3]}
    else:
        args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    f = s.makefile("rw", encoding="utf-8")

    def answer():  # the next reply, skipping asynchronous events
        while True:
            line = f.readline()
            if not line:
                raise SystemExit(f"qmp: {path} closed the connection")
            msg = json.loads(line)
            if "return" in msg or "error" in msg:
                return msg

    json.loads(f.readline())  # the greeting
    f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
    f.flush()
    answer()
    f.write(json.dumps({"execute": command, "arguments": args}) + "\n")
    f.flush()
    msg = answer()
    if "error" in msg:
        print(f"qmp: {command}: {msg['error'].get('desc', msg['error'])}", file=sys.stderr)
        return 1
    ret = msg["return"]
    print(ret if isinstance(ret, str) else json.dumps(ret))
    return 0


if __name__ == "__main__":
    sys.exit(main())
