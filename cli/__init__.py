"""Click command-line front of advtf (installed as ``advtf.cli``)."""
