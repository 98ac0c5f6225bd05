"""Sources of faces: folders and packaged portraits (:mod:`.folders`), and faces that a model makes
(:mod:`.generative`: StyleGAN2 latents, text prompts)."""
