#!/usr/bin/env python3
"""Prints the end of every failed test's output from ctest's LastTest.log.

`make test` calls it after a failed ctest run, so that the output of the failures comes last,
where a CI log cut in the middle still shows it.
Usage: failed-test-output.py BUILD_DIR [LINES]
"""
import pathlib
import re
import sys

build = pathlib.Path(sys.argv[1])
keep = int(sys.argv[2]) if len(sys.argv) > 2 else 80
log = build / "Testing" / "Temporary" / "LastTest.log"
if not log.exists():
    sys.exit(0)
name, output, in_output = None, [], False
for line in log.read_text(errors="replace").splitlines():
    m = re.match(r"^\d+/\d+ Test: (.+)$", line)
    if m:
        name, output, in_output = m.group(1), [], False
    elif line == "Output:":
        in_output = True
    elif line == "<end of output>":
        in_output = False
    elif line.startswith("Test Failed"):
        lines = output[1:]  # the first line is a ruler
        print(f"===== failed: {name} =====")
        # Each assertion that failed, with what follows it (cluster tests dump node logs
        # after it, which would push it out of the tail) ...
        for i, line in enumerate(lines):
            if ": Failure" in line or "C++ exception" in line:
                print("\n".join(lines[i:i + 12]))
                print("-----")
        # ... then the end of the output.
        print(f"(last {keep} lines)")
        print("\n".join(lines[-keep:]))
    elif in_output:
        output.append(line)
