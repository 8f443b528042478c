"""Data preparation for the TEMPO recipes: verl RL parquet files for MATH, MedQA and the OOD evaluation sets.

:mod:`.sources` (the data sets and their row conversion), :mod:`.prepare` (load, convert, write) and
:mod:`.command` (what ``tempo-verl data`` runs; its arguments are parsed in :mod:`tempo_verl.cli`).
"""
