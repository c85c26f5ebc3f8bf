"""Refuses for the first 3 seconds after its first run for an object, then allows."""

import os
import sys
import time

marker = os.path.join(sys.argv[1], os.environ["TUGGLE_NAME"] + ".first-seen")
if not os.path.exists(marker):
    with open(marker, "w") as f:
        f.write(str(time.time()))
with open(marker) as f:
    first = float(f.read())
if time.time() - first < 3:
    print("not yet (test hook)")
    sys.exit(1)
