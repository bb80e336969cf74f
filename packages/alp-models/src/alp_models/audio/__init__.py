"""Audio encoders: filterbank frames (B, T, F) + lengths → encoder frames (B, T', D) + lengths."""
