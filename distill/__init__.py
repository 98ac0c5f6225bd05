"""The student: a pix2pix U-Net trained on the factory's pairs, its export, inference and actor casting."""
