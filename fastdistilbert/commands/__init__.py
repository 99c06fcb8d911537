"""Sub-commands of the `fastdistilbert` console script (see fastdistilbert.cli)."""
