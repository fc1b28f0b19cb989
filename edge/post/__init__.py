"""Post-processing: geometry (letterbox and its inverse) and NMS."""
