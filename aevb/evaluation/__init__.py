"""Measurements on arrays: evaluation over whole splits in chunks, PCA's reference error,
code statistics (`measures.py`), pictures (`plots.py`), and the classical classifiers of M1
on the host (`host_classifiers.py`)."""
