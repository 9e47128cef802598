"""Datasets for embedkit: a generator of SIMULATED Cell Painting plates (`synthetic`).

No real RxRx1 / RxRx19a images are reachable from this project, so the image pipeline
learns and is benchmarked on plates drawn by `embedkit.datasets.synthetic`. Everything it
writes is simulated and says so (README.txt next to the images); real images reach users
through public datasets only.
"""
