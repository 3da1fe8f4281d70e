"""TEST DOUBLE at the hardware boundary: a recording stand-in for JetPack's ``jetson_clocks``.

Like the real script it pins clocks by writing each online CPU's ``scaling_min_freq`` = max and the
GPU devfreq's ``min_freq`` = ``max_freq``, stores those files as ``path:value`` lines with ``--store
FILE`` and writes them back with ``--restore FILE``, all under ``STANDIN_SYSROOT``. As the real
script (JetPack 5 and 6) does, ``--store FILE`` with an existing FILE prints ``File FILE already
exists. Can I overwrite it? Y/N:``, reads an answer from stdin and exits 1 with ``Error: file FILE
already exists!`` on anything but y/Y; ``--restore`` of a missing file says ``Error: FILE file not
found !``; ``--show`` prints the real layout (``cpuN: Online=.. Governor=.. MinFreq=.. MaxFreq=..``,
``GPU MinFreq=.. MaxFreq=.. CurrentFreq=..``, ``NV Power Mode: ..``). Not modelled: EMC, fan, the
governor and idle-state changes, the 90 s uptime check. Every call is appended to
``<sysroot>/standin-calls.log``. ``STANDIN_JETSON_CLOCKS``: ``ok`` (default), ``noroot`` (the
shell's error writing sysfs as a normal user), ``ignore`` (pinning exits 0 and changes nothing).
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
        if read(os.path.join(node, "device/of_node/name")).strip("\x00\n") in ("gpu", "ga10b"):
            yield os.path.join(node, "min_freq"), os.path.join(node, "max_freq")


def sys_path(path):
    return "/" + os.path.relpath(path, ROOT)


args = sys.argv[1:]
if BEHAVIOUR == "noroot" and args[:1] != ["--show"]:
    first = next(pairs())[0]
    print(f"/usr/bin/jetson_clocks: line 421: {sys_path(first)}: Permission denied")
    sys.exit(1)
if args[:1] == ["--show"]:
    import re

    print("SOC family:tegra234  Machine:" + read(os.path.join(ROOT, "proc/device-tree/model")).strip("\x00\n"))
    for cpu in sorted(glob.glob(os.path.join(ROOT, "sys/devices/system/cpu/cpu[0-9]*"))):
        online = read(os.path.join(cpu, "online")).strip()
        lo = read(os.path.join(cpu, "cpufreq/scaling_min_freq")).strip()
        hi = read(os.path.join(cpu, "cpufreq/scaling_max_freq")).strip()
        print(
            f"{os.path.basename(cpu)}:  Online={online} Governor=schedutil MinFreq={lo} MaxFreq={hi} CurrentFreq={lo} IdleStates: WFI=1 c7=1 "
        )
    lo_file, hi_file = list(pairs())[-1]
    lo, hi = read(lo_file).strip(), read(hi_file).strip()
    print(f"GPU MinFreq={lo} MaxFreq={hi} CurrentFreq={lo}")
    print("EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=0")
    status = read(os.path.join(ROOT, "var/lib/nvpmodel/status"))
    mode_id = int(re.search(r"pmode:(\d+)", status).group(1))
    conf = read(os.path.join(ROOT, "etc/nvpmodel.conf"))
    print("NV Power Mode: " + re.search(rf"POWER_MODEL ID={mode_id} NAME=(\S+)", conf).group(1))
    sys.exit(0)
if args[:1] == ["--store"]:
    if os.path.exists(args[1]):
        print(f"File {args[1]} already exists. Can I overwrite it? Y/N:", flush=True)
        answer = sys.stdin.readline().strip()
        if answer not in ("y", "Y"):
            print(f"Error: file {args[1]} already exists!")
            sys.exit(1)
        os.remove(args[1])
    with open(args[1], "w") as out:
        for lo, _ in pairs():
            out.write(f"{sys_path(lo)}:{read(lo).strip()}\n")
    sys.exit(0)
if args[:1] == ["--restore"]:
    if not os.path.exists(args[1]):
        print(f"Error: {args[1]} file not found !")
        sys.exit(1)
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
