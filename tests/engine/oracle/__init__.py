"""Cases run on MXNet 1.9.1 by `record.py` and on paramstore by the tests."""
