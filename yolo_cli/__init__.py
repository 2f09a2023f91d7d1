"""yolo-cli: train, run and evaluate a Keras 3 YOLO object detector from the command line."""

import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (CUDA probes, CPU feature notes) is noise on a user's terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
