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
        print(f"===== failed: {name} (last {keep} lines of its output) =====")
        print("\n".join(output[1:][-keep:]))  # the first line is a ruler
    elif in_output:
        output.append(line)
