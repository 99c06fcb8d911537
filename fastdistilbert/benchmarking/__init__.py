"""Benchmarks shipped with the package (`fastdistilbert bench`); scripts in benchmarks/ wrap them."""
