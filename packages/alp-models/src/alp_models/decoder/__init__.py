"""Caption decoders: token ids + audio frames (B, S, D) + lengths → next-token logits."""
