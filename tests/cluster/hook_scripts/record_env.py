import json
import os
import sys

with open(sys.argv[1], "a") as f:
    f.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith("TUGGLE_")}) + "\n")
