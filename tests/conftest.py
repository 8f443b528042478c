"""Hypothesis profiles for the property tests (the example counts live here, not on each test).

- ``ci`` (the default): a few examples per property, so the suite stays fast on every commit.
- ``full``: the release check, as many examples as the properties were written with::

      HYPOTHESIS_PROFILE=full python -m pytest -q tests/core
      python -m pytest -q tests/core --hypothesis-profile=full   # the same, through hypothesis's own option
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=10, deadline=None)
settings.register_profile("full", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
