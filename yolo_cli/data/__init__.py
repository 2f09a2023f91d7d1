"""Everything between files on disk and the training tensor: readers, synthetic scenes, pipeline."""
