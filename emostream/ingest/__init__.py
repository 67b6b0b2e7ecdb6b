"""Media ingest: per-participant audio segmentation and video frame sampling."""
