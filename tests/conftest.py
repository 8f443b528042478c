"""Shared test set-up: make tests/ importable (the dictionary-trie reference lives here)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
