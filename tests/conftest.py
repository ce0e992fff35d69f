import sys
from pathlib import Path

# tests/kernel.py: helpers that read the kernel's accounts.
sys.path.insert(0, str(Path(__file__).parent))
