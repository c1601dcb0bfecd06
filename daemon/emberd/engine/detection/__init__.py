"""Object detection (problem type ``object_detection``) with mmdet detectors.

mmdet is imported lazily (``mm.mmdet``): without the detection extra everything else works
and a detection request fails with FAILED_PRECONDITION naming the install command.
"""
