"""smsline benchmarks, run by ``make bench`` (``python -m bench``); not part of the test suite.

Each suite drives a real ``smsline serve`` process from the outside, the way an operator's
network would, and prints its figures with the machine they were measured on.
"""
