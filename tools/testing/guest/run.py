#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Every in-VM test of rnf, in order: KUnit, end to end, load/unload.

Run as root inside the test VM: tools/testing/vm.sh tools/testing/guest/run.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rnftest as t  # noqa: E402
import test_foundation  # noqa: E402


def main():
    t.install_rnfctl()
    os.makedirs("/sys/kernel/debug", exist_ok=True)
    if not os.path.exists("/sys/kernel/debug/kunit"):
        t.sh("mount -t debugfs none /sys/kernel/debug", check_rc=False)
    if t.module_loaded():
        t.rmmod()
    t.sh(["dmesg", "-C"])
    # Forget what kmemleak found before the tests (boot-time objects).
    if os.path.exists("/sys/kernel/debug/kmemleak"):
        for word in ("scan", "clear"):
            with open("/sys/kernel/debug/kmemleak", "w") as f:
                f.write(word)
    test_foundation.run()
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
