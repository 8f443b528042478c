"""Prefix trees on disk and on screen: the ``tempo-tree/1`` dump, its readers, the HTML/SVG pictures."""
