"""Ember's daemon package (import name ``emberd``; ``daemon`` is python-daemon's).

The in-process engine lives in :mod:`emberd.engine`.
"""

__version__ = "0.1.0"
