"""TEST DOUBLE at the hardware boundary: a recording stand-in for JetPack's ``jetson_clocks``.

Like the real script it pins clocks by writing each online CPU's ``scaling_min_freq`` = max and the
GPU devfreq's ``min_freq`` = ``max_freq``, stores those files as ``path:value`` lines with ``--store
FILE`` and writes them back with ``--restore FILE``, all under ``STANDIN_SYSROOT``. Every call is
appended to ``<sysroot>/standin-calls.log``. ``STANDIN_JETSON_CLOCKS``: ``ok`` (default),
``noroot`` (the shell's error writing sysfs as a normal user), ``ignore`` (pinning exits 0 and changes nothing).
"""

import glob
import json
import os
import sys

ROOT = os.environ["STANDIN_SYSROOT"]
BEHAVIOUR = os.environ.get("STANDIN_JETSON_CLOCKS", "ok")

with open(os.path.join(ROOT, "standin-calls.log"), "a") as f:
    f.write(json.dumps(["jetson_clocks", *sys.argv[1:]]) + "\n")


def read(path):
    with open(path) as f:
        return f.read()


def pairs():
    """(min file, max file) for every online CPU and the GPU devfreq node."""
    for cpu in sorted(glob.glob(os.path.join(ROOT, "sys/devices/system/cpu/cpu[0-9]*"))):
        online = os.path.join(cpu, "online")
        if os.path.exists(online) and read(online).strip() != "1":
            continue
        yield os.path.join(cpu, "cpufreq/scaling_min_freq"), os.path.join(cpu, "cpufreq/scaling_max_freq")
    for node in sorted(glob.glob(os.path.join(ROOT, "sys/class/devfreq/*"))):
        if read(os.path.join(node, "device/of_node/name")).strip("\x00\n") == "ga10b":
            yield os.path.join(node, "min_freq"), os.path.join(node, "max_freq")


def sys_path(path):
    return "/" + os.path.relpath(path, ROOT)


args = sys.argv[1:]
if BEHAVIOUR == "noroot" and args[:1] != ["--show"]:
    first = next(pairs())[0]
    print(f"/usr/bin/jetson_clocks: line 421: {sys_path(first)}: Permission denied")
    sys.exit(1)
if args[:1] == ["--store"]:
    with open(args[1], "w") as out:
        for lo, _ in pairs():
            out.write(f"{sys_path(lo)}:{read(lo).strip()}\n")
    sys.exit(0)
if args[:1] == ["--restore"]:
    for line in read(args[1]).splitlines():
        path, value = line.strip().rsplit(":", 1)
        with open(os.path.join(ROOT, path.lstrip("/")), "w") as f:
            f.write(value + "\n")
    sys.exit(0)
if not args:
    if BEHAVIOUR == "ignore":
        sys.exit(0)
    for lo, hi in pairs():
        with open(lo, "w") as f:
            f.write(read(hi))
    sys.exit(0)
print(f"stand-in: unsupported arguments {args}")
sys.exit(1)
