import sys

print("post hook failing on purpose")
sys.exit(3)
