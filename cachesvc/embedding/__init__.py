"""Query embeddings: the model from an installed package (ONNX Runtime or torch), micro-batched off the event loop."""
