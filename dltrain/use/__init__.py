"""Using a finished run: load it (`dltrain.load`), predict with it (`dltrain predict`), export
it (`dltrain export`), and train from Python (`dltrain.train`).

loaded.py rebuilds a run's model from its checkpoint alone — no training data is read — and
wraps it as `InUnits`: raw inputs in, values in the data's own units out, the one module that
predict, the Python API and the exports share."""
