"""Frame sources: files, images, OpenCV devices, picamera2."""
