"""Networks and diffusion pieces shared by several methods."""
