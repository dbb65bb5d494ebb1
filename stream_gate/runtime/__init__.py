"""Inference runtimes behind one small interface (onnxruntime now; TensorRT/torch later)."""
