"""Runtimes: LiteRT (TFLite) and ONNX Runtime behind one Backend protocol."""
