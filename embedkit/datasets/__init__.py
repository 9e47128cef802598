"""Datasets for embedkit: public datasets through a registry (`registry`: URL pinned to an
upstream commit, sha256, licence, a local cache; `embedkit datasets list|fetch`) and
generators of SIMULATED data (`synthetic`).

No real RxRx1 / RxRx19a images are reachable from this project, so the image pipeline
learns and is benchmarked on plates drawn by `embedkit.datasets.synthetic`. Everything it
writes is simulated and says so (README.txt next to the images); real images reach users
through public datasets only. `embedkit.datasets.synthetic.profiles` draws profile tables
with known batch effects for the batch-correction tests and benchmarks.
"""
