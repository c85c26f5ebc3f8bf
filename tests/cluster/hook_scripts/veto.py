import sys

print("disk is full (test veto)")
sys.exit(1)
