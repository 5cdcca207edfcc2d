"""The real Python library (configurable-redlock 1.0.0) driven by tests/python_interop.rs.

Usage: interop.py URL COMMAND NAME [ARGS]
  hold NAME SECONDS        take the lock (timeout 0), print "holding", hold, release, print "released"
  try NAME                 one attempt (timeout -1): print "acquired" or "held"
  wait NAME TIMEOUT        wait up to TIMEOUT s (timeout N): print "acquired" or "timeout"
  stress NAME ROUNDS       ROUNDS locked non-atomic increments of "interop:counter", checking
                           "interop:inside" (an atomic gauge) is 1 inside; print "done ROUNDS"
  loop NAME SECONDS HOLD_MS
                           once ready (imported, connected), print "start <Unix time, s>" half a
                           second ahead; from then for SECONDS take the lock (timeout 0), hold
                           HOLD_MS, release; print "<acquisitions> <longest wait in ms>"
"""
import sys
import time

import redis
from configurable_redlock import ConfigurableREDLock, ObjectLockTimeout


def main():
    url, command, name, *args = sys.argv[1:]
    client = redis.Redis.from_url(url)
    if command == "hold":
        with ConfigurableREDLock(name=name, redis_client=client):
            print("holding", flush=True)
            time.sleep(float(args[0]))
        print("released", flush=True)
    elif command == "try":
        try:
            with ConfigurableREDLock(name=name, timeout=-1, redis_client=client) as cl:
                cl()
                print("acquired", flush=True)
        except ObjectLockTimeout:
            print("held", flush=True)
    elif command == "wait":
        try:
            with ConfigurableREDLock(name=name, timeout=float(args[0]), redis_client=client) as cl:
                cl()
                print("acquired", flush=True)
        except ObjectLockTimeout:
            print("timeout", flush=True)
    elif command == "stress":
        rounds = int(args[0])
        for _ in range(rounds):
            with ConfigurableREDLock(name=name, timeout=30, redis_client=client) as cl:
                cl()
                inside = client.incr("interop:inside")
                assert inside == 1, f"{inside} holders inside the critical section"
                seen = int(client.get("interop:counter") or 0)
                time.sleep(0.001)
                client.set("interop:counter", seen + 1)
                client.decr("interop:inside")
        print(f"done {rounds}", flush=True)
    elif command == "loop":
        # The caller starts its own workers at the start announced here: an interpreter that
        # starts slowly (a busy machine) never misses the run.
        client.ping()
        start = time.time() + 0.5
        stop, hold = start + float(args[0]), float(args[1]) / 1000
        print(f"start {start}", flush=True)
        time.sleep(max(0.0, start - time.time()))
        acquisitions, longest = 0, 0.0
        while time.time() < stop:
            asked = time.monotonic()
            with ConfigurableREDLock(name=name, timeout=0, redis_client=client):
                longest = max(longest, time.monotonic() - asked)
                acquisitions += 1
                time.sleep(hold)
        print(f"{acquisitions} {longest * 1000:.0f}", flush=True)
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
