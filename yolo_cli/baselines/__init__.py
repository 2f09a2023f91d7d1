"""The course's baselines for YOLO: a sliding-window crop classifier and its convolutional form."""
