"""Core test set-up: make the dictionary-trie reference (tests/core/trie_reference.py) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
