"""This machine, as both the settings and the runs need it: the environment
jobs inherit (`~.environment`) and the workaround for CPython's zipfile
defect gh-128131 (`~.zipfix`).  Imports nothing of the package; its
``__init__`` imports nothing.
"""
