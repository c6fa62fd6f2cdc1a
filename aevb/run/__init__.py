"""What a run leaves and holds: its workdir's files (`files.py` names them all), the lock,
checkpoints, metrics, the device mesh (`parallel.py`) and the compilation cache."""
