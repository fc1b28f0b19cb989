"""On-site INT8: calibration frames from the deployed source, quantization with a sensitivity search, and an
honest accuracy/speed report (``edgepose models calibrate`` / ``edgepose models quantize``).

Nothing is imported here: the quantizer back ends (ai-edge-quantizer, onnxruntime.quantization) are optional
and are loaded by the module that needs them.
"""
