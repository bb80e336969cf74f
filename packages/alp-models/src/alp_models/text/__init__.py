"""Text encoders and their tokenizers: captions → one embedding per caption."""
