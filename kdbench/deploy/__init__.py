"""Using a trained student: checkpoints, denoising files, exact streaming, ONNX export
and what a model costs to run."""
