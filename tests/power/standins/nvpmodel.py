"""TEST DOUBLE at the hardware boundary: a recording stand-in for JetPack's ``nvpmodel``.

The only kind of double this project allows: the real tool changes a Jetson's power tree, which no
test machine has. It reads and writes the same real-format files the real tool does, under the
sysroot named by ``STANDIN_SYSROOT`` (``/etc/nvpmodel.conf``, ``/var/lib/nvpmodel/status``), prints
the real tool's output formats, and appends every call to ``<sysroot>/standin-calls.log``.

Like the real tool, ``-m`` applies the target mode's ``POWER_MODEL`` block to the (fake) sysfs: the
``GPU MAX_FREQ`` cap goes to the GPU devfreq node's ``max_freq`` (-1: the highest available
frequency; ``min_freq`` is left alone, as the kernel leaves a pinned minimum) and ``CPU_ONLINE``
to each ``cpuN/online``. A target whose ``TPC_POWER_GATING TPC_PG_MASK`` differs from the current
mode's is not switched live: the tool prints its reboot prompt and waits on stdin, as the real one
does. Not modelled: EMC/CPU frequency caps, DLA/PVA clocks, fan modes, the reboot itself.

``STANDIN_NVPMODEL`` picks how ``-m`` behaves (``STANDIN_NVPMODEL_IDS``, a comma list, limits the
misbehaviour to those target ids):
  ok      switch (the default)
  reboot  print the real "Reboot required" prompt and wait on stdin for YES (declines on EOF)
  fail    write the new mode, then fail half-way like a failed PARAM write
  noroot  fail as a normal user does (errno 13 opening a sysfs file)
  ignore  exit 0 without changing anything
  hang    never answer
"""

import glob
import json
import os
import re
import sys
import time

ROOT = os.environ["STANDIN_SYSROOT"]
BEHAVIOUR = os.environ.get("STANDIN_NVPMODEL", "ok")
ONLY = os.environ.get("STANDIN_NVPMODEL_IDS")
CONF = os.path.join(ROOT, "etc/nvpmodel.conf")
STATUS = os.path.join(ROOT, "var/lib/nvpmodel/status")

with open(os.path.join(ROOT, "standin-calls.log"), "a") as f:
    f.write(json.dumps(["nvpmodel", *sys.argv[1:]]) + "\n")

with open(CONF) as conf:
    text = conf.read()
MODES = {int(i): n for i, n in re.findall(r"^<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+)\s*>", text, re.M)}
DEFAULT = int(re.search(r"^<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>", text, re.M).group(1))
BLOCKS = {
    int(i): body
    for i, body in re.findall(r"^<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=\S+\s*>(.*?)(?=^<)", text + "\n<", re.M | re.S)
}


def mask(mode_id: int):
    m = re.search(r"^TPC_POWER_GATING TPC_PG_MASK (\S+)", BLOCKS.get(mode_id, ""), re.M)
    return m.group(1) if m else None


def gpu_node():
    for node in sorted(glob.glob(os.path.join(ROOT, "sys/class/devfreq/*"))):
        with open(os.path.join(node, "device/of_node/name")) as f:
            if f.read().strip("\x00\n") in ("gpu", "ga10b"):
                return node
    return None


def apply(mode_id: int) -> None:
    """Write the mode's GPU cap and online CPUs to the sysroot, as nvpmodel writes its PARAM files."""
    body = BLOCKS.get(mode_id, "")
    node = gpu_node()
    cap = re.search(r"^GPU MAX_FREQ (-?\d+)", body, re.M)
    if node and cap:
        value = int(cap.group(1))
        if value < 0:
            with open(os.path.join(node, "available_frequencies")) as f:
                value = max(int(v) for v in f.read().split())
        with open(os.path.join(node, "max_freq"), "w") as f:
            f.write(f"{value}\n")
    for core, online in re.findall(r"^CPU_ONLINE CORE_(\d+) ([01])", body, re.M):
        path = os.path.join(ROOT, f"sys/devices/system/cpu/cpu{core}/online")
        if os.path.exists(path):
            with open(path, "w") as f:
                f.write(f"{online}\n")


def current() -> int:
    try:
        with open(STATUS) as f:
            return int(re.search(r"pmode:(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        return DEFAULT


def write_status(mode_id: int) -> None:
    os.makedirs(os.path.dirname(STATUS), exist_ok=True)
    with open(STATUS, "w") as f:
        f.write(f"pmode:{mode_id:04d} fmode:quiet\n")


args = sys.argv[1:]
if "-q" in args or "--query" in args:
    print("NVPM WARN: fan mode is not set!")
    if BEHAVIOUR == "noroot":
        print("NVPM ERROR: Error opening /sys/kernel/nvpmodel_emc_cap/emc_iso_cap: 13")
    mode = current()
    print(f"NV Power Mode: {MODES[mode]}\n{mode}")
    sys.exit(0)

if "-p" in args:
    err = sys.stderr  # the verbose listing comes on stderr: callers must read both streams
    print("NVPM VERB: Config file: /etc/nvpmodel.conf", file=err)
    print("NVPM VERB: parsing done for /etc/nvpmodel.conf", file=err)
    print(f"NVPM VERB: PM_CONFIG: DEFAULT={MODES[DEFAULT]}({DEFAULT})", file=err)
    for mode_id, name in sorted(MODES.items()):
        print(f"NVPM VERB: POWER_MODEL: ID={mode_id} NAME={name}", file=err)
        print(
            "NVPM VERB: PARAM CPU_ONLINE: ARG CORE_0: PATH /sys/devices/system/cpu/cpu0/online: CONF_VAL: 1", file=err
        )
        print("NVPM VERB: PARAM GPU: ARG MAX_FREQ: PATH /sys/devices/gpu.0/devfreq/17000000.ga10b/max_freq", file=err)
    sys.exit(0)

if "-m" in args:
    target = int(args[args.index("-m") + 1])
    if target not in MODES:
        print(f"NVPM ERROR: request for bad power mode {target}")
        sys.exit(1)
    misbehave = BEHAVIOUR != "ok" and (ONLY is None or str(target) in ONLY.split(","))
    needs_reboot = mask(current()) != mask(target)
    if not misbehave and not needs_reboot:
        write_status(target)
        apply(target)
        sys.exit(0)
    if BEHAVIOUR == "reboot" or needs_reboot:
        print("NVPM WARN: Golden image context is already created")
        print(f"NVPM WARN: Reboot required for changing to this power mode: {target}")
        print("NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:", flush=True)
        answer = sys.stdin.readline()  # blocks for ever unless stdin is closed or answered
        if answer.strip().lower() == "yes":
            write_status(target)
            apply(target)
            print("NVPM WARN: rebooting")
            sys.exit(0)
        print("NVPM ERROR: bad input!")
        print("NVPM ERROR: optMask is 1, no request for power mode")
        sys.exit(0)
    if BEHAVIOUR == "fail":
        write_status(target)
        apply(target)
        print(
            "NVPM ERROR: failed to write PARAM GPU: ARG MAX_FREQ: PATH /sys/devices/gpu.0/devfreq/17000000.ga10b/max_freq"
        )
        sys.exit(1)
    if BEHAVIOUR == "noroot":
        print("NVPM ERROR: Error opening /sys/kernel/nvpmodel_emc_cap/emc_iso_cap: 13")
        sys.exit(1)
    if BEHAVIOUR == "ignore":
        sys.exit(0)
    if BEHAVIOUR == "hang":
        time.sleep(3600)
    sys.exit(f"stand-in: unknown STANDIN_NVPMODEL={BEHAVIOUR}")

print("Usage: nvpmodel [-m <mode>] [-q] [-p --verbose]")
sys.exit(1)
