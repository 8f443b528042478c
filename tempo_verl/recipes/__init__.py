"""The Python half of ``recipes/*.sh``: rule-based rewards (``compute_score``) and data preparation."""
