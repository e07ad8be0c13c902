"""What kdbench keeps on disk besides results: audio files read and written the same way
everywhere, and cache folders written atomically."""
