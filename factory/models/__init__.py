"""Networks and model loading shared by several rooms: torch helpers, ONNX sessions, the StyleGAN2
network, Stable Diffusion pipelines, face embeddings. Every loader takes a local path."""
